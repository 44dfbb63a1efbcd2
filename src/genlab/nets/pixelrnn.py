"""PixelRNN's Row LSTM network (van den Oord et al. 2016): an LSTM that runs over the image
row by row, top to bottom, so that the output at pixel i (raster order) sees only the
pixels before i.

A 7x7 mask-A convolution first (the centre pixel hidden), then Row LSTM layers with
residual connections. In each, the input-to-state part is a masked 1-D convolution along
the row (mask B: the pixels to the left and the centre, which by then holds only earlier
pixels) computed for the whole map at once; the state-to-state part a 1-D convolution over
the previous row's hidden state; the gates come from their sum. Each hidden state thus sees
a triangle of the rows above and a few pixels to its left. A 1x1 head gives per-pixel
logits; a class label adds a learned bias to the first layer and to every layer's gates.

`RowSampler` computes the same logits pixel by pixel for sampling, carrying each layer's
LSTM state from row to row: one column of every layer per pixel, not the whole image.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import check_num_classes, require
from genlab.nets.pixelcnn import MaskedConv2d, check_levels, logits_head, per_pixel


class MaskedRowConv(nn.Conv2d):
    """A 1 x k convolution along the row masked to the pixels to the left and the centre
    (mask B): its kernel holds just those k // 2 + 1 taps, the input padded on the left."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        require(kernel_size % 2 == 1, f"model.net.row_kernel_size must be odd (got {kernel_size})")
        super().__init__(in_channels, out_channels, (1, kernel_size // 2 + 1))
        self.reach = kernel_size // 2  # how many pixels to the left it sees

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.reach, 0)))


class RowLSTM(nn.Module):
    """One Row LSTM layer with a residual connection: N x hidden x H x W in and out."""

    def __init__(self, hidden: int, kernel_size: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedRowConv(hidden, 4 * hidden, kernel_size)
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        self.out = nn.Conv2d(hidden, hidden, 1)
        self.embed = nn.Embedding(num_classes, 4 * hidden) if num_classes else None

    def input_gates(self, x: Tensor, labels: Tensor | None) -> Tensor:
        gates = self.input_to_state(x)
        if self.embed is not None:
            gates = gates + self.embed(labels)[:, :, None, None]
        return gates

    def cell(self, gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """The LSTM update, pixel by pixel: gates N x 4h x ..., c N x h x ... -> (h, c)."""
        o, f, i, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        gates = self.input_gates(x, labels)  # N x 4h x H x W, every row at once
        n, _, _, width = x.shape
        h = c = x.new_zeros(n, self.hidden, width)
        rows = []
        for row_gates in gates.unbind(2):  # (one gradient for all the rows, not one each)
            h, c = self.cell(row_gates + self.state_to_state(h), c)
            rows.append(h)
        return x + self.out(torch.stack(rows, dim=2))


class RowLSTMNet(nn.Module):
    """Images C x H x W in [-1, 1] -> per-pixel logits: C x H x W for binary pixels
    (`levels=2`), C x levels x H x W otherwise."""

    def __init__(
        self,
        channels: int,
        levels: int = 2,
        hidden: int = 32,
        num_layers: int = 4,
        row_kernel_size: int = 3,
        first_kernel_size: int = 7,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_levels(levels)
        require(
            hidden >= 1 and num_layers >= 1,
            f"model.net.hidden and model.net.num_layers must be >= 1 (got {hidden}, {num_layers})",
        )
        check_num_classes(num_classes)
        self.channels = channels
        self.levels = levels
        self.num_classes = num_classes
        self.first = MaskedConv2d("A", channels, hidden, first_kernel_size)
        self.embed = nn.Embedding(num_classes, hidden) if num_classes else None
        self.layers = nn.ModuleList(
            RowLSTM(hidden, row_kernel_size, num_classes) for _ in range(num_layers)
        )
        self.head = logits_head(hidden, channels, levels)

    def first_features(self, x: Tensor, labels: Tensor | None) -> Tensor:
        h = self.first(x)
        if self.embed is not None:
            h = h + self.embed(labels)[:, :, None, None]
        return h

    def logits(self, h: Tensor) -> Tensor:
        """The head: features N x hidden x H x W -> the per-pixel logits."""
        return per_pixel(self.head(h), self.channels, self.levels)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            require(labels is not None, "this PixelRNN is class-conditional: pass labels")
        h = self.first_features(x, labels)
        for layer in self.layers:
            h = layer(h, labels)
        return self.logits(h)


class RowSampler:
    """The logits of `RowLSTMNet` pixel by pixel in raster order, for images being drawn:
    `logits(x, i, j)` reads the pixels of x before (i, j) and returns those at (i, j),
    N x C (x levels). Calls must come in raster order. Each layer keeps the previous row's
    cell state and state-to-state gates, and the current row's inputs and states as far as
    they are known; a pixel costs one column of every layer."""

    def __init__(self, net: RowLSTMNet, n: int, width: int, labels: Tensor | None) -> None:
        self.net, self.labels, self.width = net, labels, width
        self.pad = net.first.kernel_size[0] // 2
        self.reach = net.layers[0].input_to_state.reach
        weight = net.first.weight
        hidden = weight.shape[0]
        self.inputs = [weight.new_zeros(n, hidden, 1, width) for _ in net.layers]
        self.h = [weight.new_zeros(n, hidden, width) for _ in net.layers]
        self.c = [weight.new_zeros(n, hidden, width) for _ in net.layers]
        self.c_above = list(self.c)
        self.state_gates = list(self.c)

    def next_row(self) -> None:
        """The finished row's states become the row above."""
        self.c_above = self.c
        self.state_gates = [
            layer.state_to_state(h) for layer, h in zip(self.net.layers, self.h, strict=True)
        ]
        self.h = [torch.zeros_like(h) for h in self.h]
        self.c = [torch.zeros_like(c) for c in self.c]

    def first_column(self, x: Tensor, i: int, j: int) -> Tensor:
        """The mask-A features at (i, j): the first layer on the rows i - pad .. i and the
        columns j - pad .. j + pad around it (zeros outside the image, as its padding)."""
        p = self.pad
        window = F.pad(x[:, :, max(0, i - p) : i + 1], (p, p, max(0, p - i), 0))
        window = window[:, :, :, j : j + 2 * p + 1]
        return self.net.first_features(window, self.labels)[:, :, p : p + 1, p : p + 1]

    def logits(self, x: Tensor, i: int, j: int) -> Tensor:
        if j == 0:
            self.next_row()
        h = self.first_column(x, i, j)  # N x hidden x 1 x 1
        for k, layer in enumerate(self.net.layers):
            self.inputs[k][..., j] = h[..., 0]
            row = self.inputs[k][..., max(0, j - self.reach) : j + 1]  # what the mask lets in
            gates = layer.input_gates(row, self.labels)[..., 0, -1]
            new_h, new_c = layer.cell(gates + self.state_gates[k][..., j], self.c_above[k][..., j])
            self.h[k][..., j], self.c[k][..., j] = new_h, new_c
            h = h + layer.out(new_h[:, :, None, None])
        return self.net.logits(h)[..., 0, 0]
