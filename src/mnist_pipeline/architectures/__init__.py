"""One module per architecture, named as params.yaml's `arch` names it; shared.py holds what several share.

mnist_pipeline.models finds the modules here by name and imports only the one a model is built from, so
that dvc.yaml can name exactly the files each train and evaluate stage runs.
"""
