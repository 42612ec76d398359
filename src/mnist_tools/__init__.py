"""Tools around the pipeline, one module each: predict (your own images), smoke (the DAG on a small copy),
verify (a run against a commit's dvc.lock), dvcgen (dvc.yaml's per-model lists), lockcheck (is dvc.lock
current?), remote (make push/pull), report (the PR summary and its guard), bench, cpuzoo (results across
CPUs), frontier (accuracy against training minutes), mutation, offline_plots (dvc plots without a network).

They import the core, mnist_pipeline; the core and the stages never import them.
"""
