"""Runnable examples of what hpo tunes (``examples.custom_mlp``: a plain PyTorch model under ``task=custom``)."""
