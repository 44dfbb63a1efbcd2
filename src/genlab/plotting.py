"""Figures as arrays and PNG files, drawn with matplotlib's Agg backend (no display needed)."""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def figure_to_array(fig: plt.Figure) -> np.ndarray:
    """Render `fig` to an H x W x 3 uint8 array and close it."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def scatter_figure(
    fake: Tensor,
    real: Tensor | None = None,
    centers: Tensor | None = None,
    labels: Tensor | None = None,
    title: str = "",
) -> np.ndarray:
    """Real points in grey, generated points on top (coloured by label when given)."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    fake_np = fake.detach().float().cpu().numpy()
    if real is not None:
        real_np = real.detach().float().cpu().numpy()
        ax.scatter(real_np[:, 0], real_np[:, 1], s=4, c="0.6", alpha=0.5, label="real")
    colours = None if labels is None else labels.detach().cpu().numpy()
    ax.scatter(
        fake_np[:, 0],
        fake_np[:, 1],
        s=4,
        c=colours if colours is not None else "tab:red",
        cmap="tab10" if colours is not None else None,
        alpha=0.6,
        label="generated",
    )
    if centers is not None:
        centers_np = centers.detach().cpu().numpy()
        ax.scatter(centers_np[:, 0], centers_np[:, 1], marker="x", s=30, c="k", label="modes")
    everything = fake_np if real is None else np.concatenate([fake_np, real_np])
    low, high = np.percentile(everything, [0.5, 99.5], axis=0)
    pad = 0.15 * (high - low).max() + 1e-3
    ax.set_xlim(low[0] - pad, high[0] + pad)
    ax.set_ylim(low[1] - pad, high[1] + pad)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=3, fontsize=8)
    ax.set_title(title)
    # fixed margins: tight_layout would cost a fifth of the figure's time, every epoch
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.07, top=0.94)
    return figure_to_array(fig)


def encode_png(image: np.ndarray) -> bytes:
    """An H x W x 3 uint8 array as PNG bytes (fast zlib level: these are written every epoch)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def save_png(image: np.ndarray | bytes, path: str | Path) -> Path:
    """Write an H x W x 3 uint8 array (or PNG bytes) as a PNG file, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image if isinstance(image, bytes) else encode_png(image))
    return path


def image_grid(images: Tensor, nrow: int) -> np.ndarray:
    """Images in [-1, 1], N x C x H x W -> one H x W x 3 uint8 grid with `nrow` images a row."""
    from torchvision.utils import make_grid

    grid = make_grid(
        images.detach().float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1)
    )
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def grid_labels(num_classes: int, per_class: int) -> Tensor:
    """Labels for a grid with one row per class: 0,0,...,0, 1,1,...,1, ..."""
    import torch

    return torch.arange(num_classes).repeat_interleave(per_class)


def picture(
    samples: Tensor,
    labels: Tensor | None = None,
    title: str = "",
    nrow: int = 8,
    real: Tensor | None = None,
    centers: Tensor | None = None,
) -> np.ndarray:
    """What a set of samples looks like: a scatter plot for points, a grid for images."""
    if samples.dim() == 2:
        return scatter_figure(samples, real, centers, labels=labels, title=title)
    return image_grid(samples, nrow)
