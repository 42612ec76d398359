"""Tools around the pipeline (bench, predict, lockcheck, remote, report, smoke, isacheck, mutation, offline plots).

They import the core, mnist_pipeline; the core and the stages never import them.
"""
