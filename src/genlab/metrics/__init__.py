"""Sample-quality metrics. Plain torch/numpy/scipy; no Lightning, no Hydra."""

from genlab.metrics.classifier import DigitClassifier, batched, load_or_train_classifier
from genlab.metrics.coverage import mode_coverage
from genlab.metrics.distances import (
    class_entropy,
    frechet_distance,
    frechet_from_stats,
    least_class_recall,
    prdc,
)
from genlab.metrics.kid import kid

__all__ = [
    "DigitClassifier",
    "batched",
    "class_entropy",
    "frechet_distance",
    "frechet_from_stats",
    "kid",
    "load_or_train_classifier",
    "mode_coverage",
    "least_class_recall",
    "prdc",
]
