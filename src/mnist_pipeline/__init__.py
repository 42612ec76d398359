"""The pipeline core that the stages import: params, data, models, training, evaluation, checkpoints, plots.

Tools (bench, predict, lockcheck, ...) live apart, in mnist_tools.
"""
