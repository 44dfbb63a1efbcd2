"""The pictures: grey grids as one-channel PNGs, the 2-D scatter's kept background."""

import io

import numpy as np
import torch
from PIL import Image

from genlab import plotting
from genlab.plotting import encode_png, png_channels


def test_grey_pictures_are_stored_with_one_channel():
    """A grid of one-channel images (three equal channels) is written as a grey PNG, the
    same pixels; a picture with colour stays RGB; TensorBoard is told which."""
    grey = np.repeat(np.arange(48, dtype=np.uint8).reshape(4, 12, 1), 3, axis=2)
    png = encode_png(grey)
    assert png_channels(png) == 1
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), grey[..., 0])
    colour = grey.copy()
    colour[0, 0, 1] = 200
    png = encode_png(colour)
    assert png_channels(png) == 3
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), colour)


def test_scatter_reuses_its_background_while_the_view_holds():
    """The per-epoch scatter draws axes, real points and modes once; a new picture redraws
    them only when the generated points leave the view, which then grows to hold them."""
    torch.manual_seed(0)
    real, centers = torch.randn(500, 2), torch.randn(8, 2)
    first = plotting.scatter_figure(torch.randn(500, 2) * 0.5, real, centers, title="epoch 0")
    background = plotting.SCATTER.background
    second = plotting.scatter_figure(torch.randn(500, 2) * 0.5, real, centers, title="epoch 1")
    assert plotting.SCATTER.background is background  # reused
    assert first.shape == second.shape == (500, 500, 3) and not np.array_equal(first, second)
    # the legend's kept pixels lie over the points (upper right, where these points crowd):
    # an opaque box, the same whatever is under it
    corner = torch.rand(500, 2) * torch.tensor([1.6, 1.0]) + torch.tensor([1.5, 2.9])
    third = plotting.scatter_figure(corner, real, centers, title="epoch 1")
    assert plotting.SCATTER.background is background
    box = plotting.SCATTER.legend.get_window_extent()
    rows = slice(500 - int(box.y1) + 1, 500 - int(box.y0) - 1)
    columns = slice(int(box.x0) + 2, int(box.x1) - 1)
    assert np.array_equal(third[rows, columns], second[rows, columns])
    changed = np.any(third != second, axis=2)
    assert changed[rows, int(box.x0) - 40 : int(box.x0)].sum() > 50  # points beside the box
    # points far outside: a new view that holds them, in whole quarter steps
    low, high = plotting.view_limits(real.numpy(), real.numpy())
    real_low, real_high = np.percentile(real.numpy(), [0.5, 99.5], axis=0)
    span = float((real_high - real_low).max()) + 1e-3
    assert np.allclose(low, real_low - 0.15 * span) and np.allclose(high, real_high + 0.15 * span)
    far = real.numpy() * 4
    grown_low, grown_high = plotting.view_limits(far, real.numpy())
    far_low, far_high = np.percentile(far, [0.5, 99.5], axis=0)
    assert np.all(grown_low <= far_low) and np.all(grown_high >= far_high)
    steps = np.concatenate([(low - grown_low), (grown_high - high)]) / (0.25 * span)
    assert np.allclose(steps, steps.round()) and np.all(steps >= 1)
    axes = plotting.SCATTER.figure.axes[0]
    plotting.scatter_figure(torch.from_numpy(far), real, centers, title="diverged")
    assert plotting.SCATTER.background is not background
    # the same axes (their ticks reused), showing the grown view
    assert plotting.SCATTER.figure.axes == [axes]
    assert np.allclose([axes.get_xlim()[0], axes.get_ylim()[0]], grown_low)
    assert np.allclose([axes.get_xlim()[1], axes.get_ylim()[1]], grown_high)
    # diverged to non-finite values: still a picture
    nan = torch.full((10, 2), float("nan"))
    assert plotting.scatter_figure(nan, real, centers).shape == (500, 500, 3)
    assert plotting.scatter_figure(nan).shape == (500, 500, 3)  # and no real points either
    assert plotting.SCATTER.figure.axes[0] is not axes  # another scene: new axes
