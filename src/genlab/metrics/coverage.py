"""Mode coverage on mixtures of Gaussians, as defined by the Unrolled GAN, VEEGAN and PacGAN papers."""

import math

import torch
from torch import Tensor


def mode_coverage(
    samples: Tensor, centers: Tensor, std: float, threshold: float = 3.0
) -> dict[str, float]:
    """Score generated points against the known mixture centres.

    A sample is high-quality when it lies within `threshold` standard deviations of its
    nearest centre. Returns:
      modes: the number of centres with at least one high-quality sample;
      hq: the fraction of high-quality samples;
      reverse_kl: KL(p || uniform), p being the histogram of nearest modes over the
        high-quality samples. With no high-quality sample at all it is log(K), the worst
        value a histogram can reach.
    """
    samples = samples.detach().float().cpu()
    centers = centers.detach().float().cpu()
    distances = torch.cdist(samples, centers)
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= threshold * std
    counts = torch.bincount(nearest[high_quality], minlength=len(centers)).double()
    num_modes = len(centers)
    if counts.sum() == 0:
        reverse_kl = math.log(num_modes)
    else:
        p = counts / counts.sum()
        present = p > 0
        reverse_kl = float((p[present] * (p[present] * num_modes).log()).sum())
    return {
        "modes": float((counts > 0).sum()),
        "hq": float(high_quality.float().mean()),
        "reverse_kl": reverse_kl,
    }
