"""PixelRNN as a LightningModule: PixelCNN's exact likelihood and training step, with a Row
LSTM net (nets/pixelrnn.py) in place of the masked convolutions.

Only sampling differs: the LSTM carries its state from row to row, so each pixel costs one
column of every layer (`RowSampler`) instead of a forward pass over all the rows so far.
"""

import torch
from torch import Tensor

from genlab.errors import require
from genlab.models.pixelcnn import PixelCNN
from genlab.nets.pixelrnn import RowLSTMNet, RowSampler


class PixelRNN(PixelCNN):
    def __init__(self, net, *args, **kwargs) -> None:
        require(
            isinstance(net, RowLSTMNet),
            "model=pixelrnn samples with a Row LSTM's state: set "
            "model.net._target_=genlab.nets.pixelrnn.RowLSTMNet",
        )
        super().__init__(net, *args, **kwargs)

    def sample_chunk(self, n: int, labels: Tensor | None, generator) -> Tensor:
        """Pixel by pixel in raster order, the LSTM state carried from row to row; the same
        draws as PixelCNN's pass over the rows so far (`PixelCNN.sample_chunk`)."""
        channels, height, width = self.shape
        x = torch.zeros((n, channels, height, width), device=self.device)
        sampler = RowSampler(self.net, n, width, labels)
        for i in range(height):
            for j in range(width):
                x[:, :, i, j] = self.draw(sampler.logits(x, i, j), generator)
        return x
