"""Distances between a generated and a real sample set, in any feature space.

For 2-D data the features are the points themselves; for images they are a classifier's
penultimate activations.
"""

import numpy as np
import torch
from torch import Tensor


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r) + Tr(S_f) - 2 Tr((S_r S_f)^(1/2)) between Gaussian fits (as in FID).

    Tr((S_r S_f)^(1/2)) is the sum of the square roots of the eigenvalues of S_r S_f (real
    and non-negative for two covariance matrices), which stays stable where sqrtm fails on
    near-singular matrices.
    """
    if len(real) < 2 or len(fake) < 2:
        return float("nan")  # a covariance needs two samples
    real_np = real.detach().double().cpu().numpy()
    fake_np = fake.detach().double().cpu().numpy()
    mu_r, mu_f = real_np.mean(0), fake_np.mean(0)
    cov_r = np.atleast_2d(np.cov(real_np, rowvar=False))
    cov_f = np.atleast_2d(np.cov(fake_np, rowvar=False))
    eigenvalues = np.linalg.eigvals(cov_r @ cov_f).real
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    value = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2 * trace_sqrt
    return float(max(value, 0.0))


def _kth_neighbour_radii(features: Tensor, k: int) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values


def prdc(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    """Precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

    NaN when either set has no more than k samples (there is no k-th neighbour)."""
    if len(real) <= k or len(fake) <= k:
        return dict.fromkeys(("precision", "recall", "density", "coverage"), float("nan"))
    real = real.detach().float().cpu()
    fake = fake.detach().float().cpu()
    real_radii = _kth_neighbour_radii(real, k)
    fake_radii = _kth_neighbour_radii(fake, k)
    real_to_fake = torch.cdist(real, fake)  # [n_real, n_fake]
    inside_real_balls = real_to_fake <= real_radii[:, None]
    inside_fake_balls = real_to_fake <= fake_radii[None, :]
    return {
        "precision": float(inside_real_balls.any(dim=0).float().mean()),
        "recall": float(inside_fake_balls.any(dim=1).float().mean()),
        "density": float(inside_real_balls.float().sum(dim=0).mean() / k),
        "coverage": float((real_to_fake.min(dim=1).values <= real_radii).float().mean()),
    }


def class_entropy(predicted: Tensor, num_classes: int) -> float:
    """Entropy (nats) of the histogram of predicted classes: ln K when every class is equally
    frequent, 0 when the samples collapse onto one class."""
    counts = torch.bincount(predicted.flatten().cpu(), minlength=num_classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())
