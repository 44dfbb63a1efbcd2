"""How close translated images are to the truth, for image-to-image models."""

import torch
from torch import Tensor


def image_errors(translated: Tensor, target: Tensor) -> dict[str, float]:
    """Mean absolute error and PSNR (dB), both on pixels scaled to [0, 1]; PSNR per image,
    then averaged."""
    difference = (translated.float() - target.float()) / 2  # [-1, 1] -> [0, 1] scale
    mse = difference.pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return {
        "l1": float(difference.abs().mean()),
        "psnr": float((10 * torch.log10(1.0 / mse)).mean()),
    }
