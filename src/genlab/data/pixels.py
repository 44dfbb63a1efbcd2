"""Images as stored (uint8, 0..255) and as models see them (float32 in [-1, 1]).

Every genlab image set is kept as uint8, a quarter of its float32 size, in memory, on the
training device or in a cache file; each batch becomes float on the device that
trains on it (`to_model_range`). Points stay float32.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 1024  # images resized at a time, so that a large set is never float all at once


def to_uint8(pixels: Tensor, max_value: float) -> Tensor:
    """Pixels in [0, max_value] -> uint8 in [0, 255] (rounded)."""
    if pixels.dtype == torch.uint8 and max_value == 255:
        return pixels
    return pixels.float().mul(255.0 / max_value).round_().clamp_(0, 255).to(torch.uint8)


def to_model_range(images: Tensor) -> Tensor:
    """uint8 images -> float32 in [-1, 1]; anything else (points, float images) unchanged."""
    if images.dtype != torch.uint8:
        return images
    return images.float().div_(127.5).sub_(1.0)


def to_stored_range(images: Tensor) -> Tensor:
    """float images in [-1, 1] -> uint8 (rounded), the inverse of `to_model_range`."""
    return images.float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def resize(images: Tensor, image_size: int) -> Tensor:
    """uint8 images N x C x H x W -> N x C x image_size x image_size (bilinear), uint8."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    size = (image_size, image_size)
    return torch.cat(
        [
            F.interpolate(chunk.float(), size=size, mode="bilinear", align_corners=False)
            .round_()
            .clamp_(0, 255)
            .to(torch.uint8)
            for chunk in images.split(CHUNK)
        ]
    )


def binarize(images: Tensor) -> Tensor:
    """Pixels above half intensity -> 255, the rest 0 (binarized digits)."""
    return (images > 127).to(torch.uint8).mul_(255)


def flip_masks(batches: int, batch_size: int, seed: int, epoch: int) -> Tensor:
    """Which images of each of an epoch's batches to flip, [batches, batch_size]: a coin per
    image, a function of the seed and the epoch only, so that a resumed run flips the same
    ones. Drawn once an epoch and moved to the device once."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)
    return torch.rand(batches, batch_size, generator=generator) < 0.5


def flip_horizontally(images: Tensor, mask: Tensor) -> Tensor:
    """`images[i]` mirrored left to right where `mask[i]` (on the images' device)."""
    mask = mask.view(-1, *([1] * (images.dim() - 1)))
    return torch.where(mask, images.flip(-1), images)
