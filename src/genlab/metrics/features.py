"""The feature spaces that a final evaluation compares real and generated images in.

`inception`: the 2048-d pool features of torchmetrics' FID Inception (torch-fidelity's port
of the TensorFlow network), the literature's FID and KID; it needs `genlab[fid]` and its
weights already in torch.hub's cache. `classifier`: the 128-d penultimate features of the
digit classifier trained on the dataset's own training split (labelled data only).
"""

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.metrics.classifier import batched, load_or_train_classifier
from genlab.metrics.inception import INCEPTION_WEIGHTS, inception_weights_path, to_inception_input


@dataclass
class FeatureExtractor:
    """`function` maps a batch of [-1, 1] images to [N, dim] float32 features on the CPU;
    `identity` names the network and its weights (part of the reference cache's name)."""

    name: str
    identity: str
    dim: int
    function: Callable[[Tensor], Tensor]


def inception_missing() -> str | None:
    """What is missing for the Inception features (one line), or None when both the
    weights and torch-fidelity are here."""
    path = inception_weights_path()
    package = importlib.util.find_spec("torch_fidelity") is not None
    install = "" if package else ", and pip install 'genlab[fid]'"
    if not path.is_file():
        return (
            f"the Inception weights {INCEPTION_WEIGHTS} are not in {path.parent} and cannot be "
            f"downloaded offline: copy the file there{install}"
        )
    if not package:
        return "the Inception features need torch-fidelity: pip install 'genlab[fid]'"
    return None


def inception_extractor(device: str) -> FeatureExtractor:
    from torchmetrics.image.fid import NoTrainInceptionV3

    net = NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=["2048"],
        feature_extractor_weights_path=str(inception_weights_path()),
    ).to(device)

    @torch.no_grad()
    def function(images: Tensor) -> Tensor:
        # [-1, 1] -> the uint8 pixels the network was made for (rounded: the data's own
        # pixels come back exactly)
        pixels = to_inception_input(images.to(device)).mul(255).round().to(torch.uint8)
        return net(pixels).float().cpu()

    return FeatureExtractor("inception", Path(INCEPTION_WEIGHTS).stem, 2048, function)


def classifier_extractor(
    images: Tensor, labels: Tensor, num_classes: int, cache_dir: str | Path, device: str
) -> FeatureExtractor:
    """The digit classifier of this training set (trained first when not in `cache_dir`)."""
    classifier, path, _ = load_or_train_classifier(images, labels, num_classes, cache_dir)
    return classifier_features(classifier, path, classifier.head.in_features, device)


def classifier_features(
    net: nn.Module, path: Path, dim: int, device: str, kind: str = "classifier"
) -> FeatureExtractor:
    """`net.features` (a digit classifier's, or a reader of several channels built on one) as
    an extractor, named `kind` and the digest of the weights file at `path`."""
    net = net.to(device)

    def function(batch: Tensor) -> Tensor:
        return batched(net.features, batch.to(device)).float().cpu()

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return FeatureExtractor("classifier", f"{kind}-{digest}", dim, function)
