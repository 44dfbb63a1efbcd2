"""Sample-quality metrics. Plain torch/numpy/scipy; no Lightning, no Hydra."""

from genlab.metrics.coverage import mode_coverage
from genlab.metrics.distances import frechet_distance, prdc

__all__ = ["frechet_distance", "mode_coverage", "prdc"]
