"""The one exception type that stages report as a single line instead of a traceback."""


class PipelineError(Exception):
    """A problem the user can fix; the message names it and says how."""
