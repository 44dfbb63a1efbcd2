"""Figures as arrays and PNG files, drawn with matplotlib's Agg backend (no display needed)."""

import io
import warnings
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


def view_limits(fake: np.ndarray, real: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The scatter's x and y limits: the real points' 0.5-99.5 percentile box with 15%
    margins (the generated points' box when there are no real ones), grown in whole quarters
    of its size wherever the generated points spill out. So the view, and the figure's cached
    background, stay put while the generated points stay inside it."""
    with warnings.catch_warnings():  # all-NaN points (a diverged model) draw an empty view
        warnings.simplefilter("ignore", RuntimeWarning)
        fake_low, fake_high = np.nanpercentile(fake, [0.5, 99.5], axis=0)
        low, high = (
            (fake_low, fake_high) if real is None else np.nanpercentile(real, [0.5, 99.5], axis=0)
        )
    if not np.all(np.isfinite([low, high])):
        low, high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    span = float((high - low).max()) + 1e-3
    low, high = low - 0.15 * span, high + 0.15 * span
    if real is not None:
        step = 0.25 * span
        if np.all(np.isfinite([fake_low, fake_high])):
            low = np.where(fake_low < low, low - np.ceil((low - fake_low) / step) * step, low)
            high = np.where(
                fake_high > high, high + np.ceil((fake_high - high) / step) * step, high
            )
    return low, high


class ScatterCanvas:
    """One figure reused for every scatter of a process: the part that does not change from
    epoch to epoch (axes and ticks, the real points, the modes) is drawn once and kept as a
    bitmap, and so is the legend, which lies on top of the points (an opaque box, so that its
    pixels are the same whatever is under it); each call draws only the generated points
    over the first bitmap, puts the legend's pixels back over them and writes the title.
    Drawing the text of the axes' ticks and of the legend is most of matplotlib's time: 64 ms
    a picture drawn in full, 14 ms with the legend drawn anew each time, about 5 ms like this.
    Drawn on the thread that calls it (the training loop's), one call at a time."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5, 5), dpi=100)
        self.canvas = FigureCanvasAgg(self.figure)
        # what the cached background shows (the real points, the modes, whether the
        # generated points are coloured by class) and its (low, high) view
        self.scene: tuple | None = None
        self.view: tuple[np.ndarray, np.ndarray] | None = None
        self.background = None

    def draw(
        self,
        fake: np.ndarray,
        real: np.ndarray | None,
        centers: np.ndarray | None,
        colours: np.ndarray | None,
        title: str,
    ) -> np.ndarray:
        scene = (
            None if real is None else hash(real.tobytes()),
            None if centers is None else hash(centers.tobytes()),
            colours is not None,
        )
        low, high = view_limits(fake, real)
        if scene != self.scene:
            self.draw_scene(real, centers, colours is not None)
            self.scene, self.view = scene, None
        if self.view is None or not self.view_fits(low, high):
            self.draw_background(low, high)
            self.view = (low, high)
        self.canvas.restore_region(self.background)
        ax = self.figure.axes[0]
        points = ax.scatter(
            fake[:, 0], fake[:, 1], s=4, alpha=0.6, animated=True,
            c=colours if colours is not None else "tab:red",
            cmap="tab10" if colours is not None else None,
        )  # fmt: skip
        ax.draw_artist(points)
        points.remove()
        self.canvas.restore_region(self.legend_pixels)  # on top of the points
        self.title.set_text(title)
        ax.draw_artist(self.title)
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def view_fits(self, low: np.ndarray, high: np.ndarray) -> bool:
        """The current view holds the box (low, high) and is not over twice its size, so
        it stays (a model that wanders early on does not redraw the background every epoch)."""
        shown_low, shown_high = self.view
        holds = np.all(low >= shown_low) and np.all(high <= shown_high)
        return bool(holds and (high - low).max() >= 0.5 * (shown_high - shown_low).max())

    def draw_scene(
        self, real: np.ndarray | None, centers: np.ndarray | None, labelled: bool
    ) -> None:
        """New axes with what stays from epoch to epoch: the real points, the modes, the
        legend and an empty title."""
        self.figure.clear()
        ax = self.figure.add_subplot()
        if real is not None:
            ax.scatter(real[:, 0], real[:, 1], s=4, c="0.6", alpha=0.5, label="real")
        # the generated points' legend entry (the points themselves are drawn per call)
        ax.scatter(
            [], [], s=4, c="tab:blue" if labelled else "tab:red", alpha=0.6, label="generated"
        )
        if centers is not None:
            ax.scatter(centers[:, 0], centers[:, 1], marker="x", s=30, c="k", label="modes")
        ax.set_aspect("equal")
        # opaque, so that the legend's pixels can be kept and put back over any points
        self.legend = ax.legend(loc="upper right", markerscale=3, fontsize=8, framealpha=1.0)
        self.legend.set_animated(True)
        self.title = ax.set_title("", animated=True)
        # fixed margins: tight_layout would cost a fifth of the figure's time
        self.figure.subplots_adjust(left=0.1, right=0.97, bottom=0.07, top=0.94)

    def draw_background(self, low: np.ndarray, high: np.ndarray) -> None:
        """The scene in the view (low, high), drawn in full and kept as the bitmap that each
        picture starts from. The axes are kept from one view to the next, so that matplotlib
        reuses their tick objects (making them is most of a first draw's time)."""
        ax = self.figure.axes[0]
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        ax.draw_artist(self.legend)
        # the frame's edge line reaches half its width beyond the box: one pixel more
        box = self.legend.get_window_extent(self.canvas.get_renderer()).padded(1)
        self.legend_pixels = self.canvas.copy_from_bbox(box)


SCATTER: ScatterCanvas | None = None


def scatter_figure(
    fake: Tensor,
    real: Tensor | None = None,
    centers: Tensor | None = None,
    labels: Tensor | None = None,
    title: str = "",
) -> np.ndarray:
    """Real points in grey, generated points on top (coloured by label when given)."""
    global SCATTER
    if SCATTER is None:
        SCATTER = ScatterCanvas()
    return SCATTER.draw(
        fake.detach().float().cpu().numpy(),
        None if real is None else real.detach().float().cpu().numpy(),
        None if centers is None else centers.detach().float().cpu().numpy(),
        None if labels is None else labels.detach().cpu().numpy(),
        title,
    )


def encode_png(image: np.ndarray) -> bytes:
    """An H x W x 3 uint8 array as PNG bytes (fast zlib level: these are written every epoch).
    A grey picture (three equal channels: the grids of one-channel images) is stored as one
    channel, which encodes in half the time into two thirds of the bytes."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 3 and is_grey(image):
        image = image[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def is_grey(image: np.ndarray) -> bool:
    return bool(
        np.array_equal(image[..., 0], image[..., 1])
        and np.array_equal(image[..., 1], image[..., 2])
    )


# PNG colour types (the byte after the bit depth in the IHDR chunk) -> channels
PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def png_channels(png: bytes) -> int:
    """How many channels the PNG stores: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA."""
    return PNG_CHANNELS[png[25]]


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
