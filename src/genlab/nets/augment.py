"""Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020).

With a few thousand training images D memorises the real set within a few epochs, and its
decisions (and an ACGAN's class head) away from those images become arbitrary: G then
learns to please D with images no person would call digits. Showing D every image, real
or generated, through the same random translation, cutout and colour jitter stops the
memorising. The transforms are differentiable, so G's gradient passes through them, and
they are drawn afresh for each call: D's real batch and fake batch get independent draws.

Written for this project after the paper's description; the transforms keep the class of
a digit or an object, so a class head still learns from augmented images.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genlab.errors import require

POLICIES = ("color", "translation", "cutout")


def random_brightness_contrast(x: Tensor) -> Tensor:
    """Brightness shift in [-0.5, 0.5] and contrast scale in [0.5, 1.5], per image (and a
    saturation scale in [0, 2] for colour images), on images in [-1, 1]."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def random_translation(x: Tensor, ratio: float = 0.125, fill: float = -1.0) -> Tensor:
    """Shift each image by up to `ratio` of its size in each direction; the uncovered border
    takes `fill` (-1: the background of digits on black)."""
    n, _, h, w = x.shape
    pad_h, pad_w = max(1, round(h * ratio)), max(1, round(w * ratio))
    padded = nn.functional.pad(x, (pad_w, pad_w, pad_h, pad_h), value=fill)
    dy = torch.randint(0, 2 * pad_h + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * pad_w + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    # (n, h, w, C) gathered from the padded NHWC view, back to NCHW
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_cutout(x: Tensor, ratio: float = 0.5, fill: float = 0.0) -> Tensor:
    """Set a square of `ratio` times the image size, at a random place in each image, to
    `fill` (the squares may hang over the border)."""
    n, _, h, w = x.shape
    size_h, size_w = max(1, round(h * ratio)), max(1, round(w * ratio))
    top = torch.randint(0, h + 1 - size_h % 2, (n, 1, 1), device=x.device) - size_h // 2
    left = torch.randint(0, w + 1 - size_w % 2, (n, 1, 1), device=x.device) - size_w // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, fill), x)


class DiffAugment(nn.Module):
    """The transforms named in `policy`, in the order color, translation, cutout. An empty
    policy is the identity."""

    def __init__(self, policy: Sequence[str] = ("translation", "cutout")) -> None:
        super().__init__()
        policy = [policy] if isinstance(policy, str) else list(policy)
        unknown = sorted(set(policy) - set(POLICIES))
        require(
            not unknown,
            f"model.augment: unknown transform(s) {unknown}; choose from {list(POLICIES)}, "
            "e.g. model.augment=[translation,cutout]",
        )
        self.policy = [name for name in POLICIES if name in policy]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:  # points and other non-image data pass through
            return x
        if "color" in self.policy:
            x = random_brightness_contrast(x)
        if "translation" in self.policy:
            x = random_translation(x)
        if "cutout" in self.policy:
            x = random_cutout(x)
        return x

    def extra_repr(self) -> str:
        return f"policy={self.policy}"
