"""MNIST classifiers as a DVC pipeline: data, models, training, evaluation and figures."""
