"""The mode count of stacked MNIST (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al.
2018): a digit classifier reads each channel of a sample, the digits read make its mode
(100 * r + 10 * g + b of 1,000), and the histogram of the modes of N samples gives
`modes` (how many were seen) and `reverse_kl`, KL(p || uniform) = sum over the seen modes
of p log(p * 1000) (the papers' "KL"; the name `eval/reverse_kl` is the one the mode count
on the 2-D mixtures already logs, `metrics.coverage`, and leaves the VAE's `eval/kl` alone):
0 for an even spread, ln 1000 = 6.91 for one mode alone.
"""

from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.metrics.classifier import load_or_train_classifier

DIGITS = 10


class ChannelReader(nn.Module):
    """A one-channel digit classifier applied to each channel of an image.

    `features`: the classifier's features of every channel, side by side; `head`: logits
    over the 10^C digit combinations, the sum of each channel's log-probabilities, so that
    its argmax is the digits read one channel at a time (`classes`, without the 1,000
    logits). `forward` is `head(features(x))`, as for the classifier itself."""

    def __init__(self, classifier: nn.Module, channels: int = 3) -> None:
        super().__init__()
        self.classifier = classifier
        self.channels = channels
        self.num_classes = DIGITS**channels

    def features(self, x: Tensor) -> Tensor:
        return torch.cat([self.classifier.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1)

    def head(self, features: Tensor) -> Tensor:
        per_channel = features.chunk(self.channels, dim=1)
        combined = torch.zeros(len(features), 1, device=features.device)
        for part in per_channel:  # digits of the first channel are the most significant
            log_p = self.classifier.head(part).log_softmax(dim=1)
            combined = (combined[:, :, None] + log_p[:, None, :]).flatten(1)
        return combined

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def classes(self, x: Tensor) -> Tensor:
        """The mode of each image: its channels' digits read one at a time."""
        modes = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for c in range(x.shape[1]):
            modes = modes * DIGITS + self.classifier(x[:, c : c + 1]).argmax(dim=1)
        return modes


def mode_metrics(modes: Tensor, num_modes: int = DIGITS**3) -> dict[str, float]:
    """`modes`: how many distinct modes `modes` holds; `reverse_kl`: KL(p || uniform over
    `num_modes`) of their histogram p, sum p log(p * num_modes) over the modes seen."""
    counts = torch.bincount(modes.flatten().cpu(), minlength=num_modes).double()
    p = counts[counts > 0] / counts.sum()
    return {"modes": float(len(p)), "reverse_kl": float((p * (p * num_modes).log()).sum())}


def channel_reader(
    datamodule, cache_dir: str | Path, epochs: int = 15
) -> tuple[ChannelReader, Path, bool]:
    """The reader of stacked data's channels: the digit classifier trained on its single
    digits (`datamodule.channel_digits()`, cached in `cache_dir`), applied to each channel.
    Returns (reader, the classifier's cache file, whether it came from the cache)."""
    images, labels = datamodule.channel_digits()
    classifier, path, from_cache = load_or_train_classifier(
        images.cpu(), labels.cpu(), DIGITS, cache_dir, epochs=epochs
    )
    return ChannelReader(classifier, datamodule.shape[0]), path, from_cache
