"""Kernel Inception Distance (Bińkowski et al. 2018), computed as torch-fidelity does.

The squared maximum mean discrepancy between the real and generated features under the
polynomial kernel k(x, y) = (x·y / d + 1)^3, estimated without bias, averaged over random
subsets of both sets (100 subsets of 1,000 by default). Unlike the Fréchet distance it has
no bias towards small sample sizes, so its values compare across n.
"""

import torch
from torch import Tensor


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x_i, y_j) = (x_i·y_j / d + 1)^3 for every pair of rows."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """The unbiased MMD² estimate between the rows of x [m, d] and y [n, d]:
    sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1))
    - 2 sum_{i,j} k(x_i, y_j) / (mn)."""
    x, y = x.double(), y.double()
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    across = polynomial_kernel(x, y).sum() / (m * n)
    return float(within_x + within_y - 2 * across)


def kid(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
    """KID's mean and standard deviation over `subsets` random subsets of each set, and the
    subset size used: `subset_size`, or the smaller set's size when it has fewer rows."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        return float("nan"), float("nan"), size
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor(
        [
            mmd2_unbiased(
                real[torch.randperm(len(real), generator=generator)[:size]],
                fake[torch.randperm(len(fake), generator=generator)[:size]],
            )
            for _ in range(subsets)
        ],
        dtype=torch.float64,
    )
    return float(values.mean()), float(values.std(unbiased=False)), size
