"""genlab-eval on stacked MNIST (`data=stacked_mnist`): the mode count of VEEGAN (Srivastava
et al. 2017) and PacGAN (Lin et al. 2018), and the distances in the features that read it.

mnist_mini's digit classifier reads each channel of a sample (`metrics.stacked`, the reader
of the per-epoch `eval/modes`): `modes` and `reverse_kl` count the digit triples of the n
samples (26,000 unless n= is given: the papers' count), and fid, kid and prdc compare the
three channels' classifier features side by side (3 x 128), not the features of a
classifier of the 1,000 triples. `features=auto` and `features=classifier` both mean these
features on this data; Inception's are refused (the modes are read in these).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from genlab.errors import require
from genlab.metrics.classifier import batched
from genlab.metrics.features import FeatureExtractor, classifier_features
from genlab.metrics.stacked import channel_reader, mode_metrics

MODE_SAMPLES = 26_000  # the samples whose modes VEEGAN and PacGAN count


def is_stacked(datamodule) -> bool:
    """Whether the data holds a digit in each channel (stacked MNIST)."""
    return hasattr(datamodule, "channel_digits")


def check_modes_asked(metrics: list[str], datamodule) -> None:
    require(
        "modes" not in metrics or is_stacked(datamodule),
        "metrics=[modes] counts the digit triples of stacked MNIST (data=stacked_mnist) and "
        "this checkpoint's data has none; leave modes out, e.g. metrics=[fid,kid,prdc]",
    )


@dataclass
class ChannelFeatures(FeatureExtractor):
    """The reader's features of each channel, side by side; `modes` maps them to each
    image's digit triple 100 * r + 10 * g + b (the reader's head, read channel by channel)."""

    modes: Callable[[Tensor], Tensor]


def channel_features(features: str, datamodule, cache_dir: Path, device: str) -> ChannelFeatures:
    """The reader of `datamodule`'s channels as a feature extractor (`features=auto` or
    `classifier`), its classifier cached in `cache_dir`/classifiers."""
    require(
        features != "inception",
        "features=inception: stacked MNIST is scored in the features of its digit classifier, "
        "one channel at a time (those its modes are read in); use features=auto",
    )
    reader, path, _ = channel_reader(datamodule, cache_dir / "classifiers")
    dim = reader.channels * reader.classifier.head.in_features
    base = classifier_features(reader, path, dim, device, kind="channels-classifier")

    def modes(found: Tensor) -> Tensor:
        return batched(lambda part: reader.head(part.to(device)).argmax(dim=1).cpu(), found)

    return ChannelFeatures(base.name, base.identity, base.dim, base.function, modes)


def mode_scores(extractor: ChannelFeatures, fake: Tensor) -> dict[str, float]:
    """`modes` and `reverse_kl` of the samples whose channel features are `fake`."""
    return mode_metrics(extractor.modes(fake))
