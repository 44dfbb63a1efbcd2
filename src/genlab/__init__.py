"""genlab: an experiment framework for deep generative models, on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
