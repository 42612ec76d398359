"""Tools around the pipeline: bench, predict, lockcheck, remote, report, smoke, isacheck, mutation, plots.

They import the core, mnist_pipeline; the core and the stages never import them.
"""
