"""Optional: torchmetrics' Inception FID, when its Inception weights are already on disk.

The weights cannot be downloaded on an offline machine, so this is never required: the
classifier-feature `fd` is always computed. torchmetrics and torch-fidelity are imported
only when the option is on (`pip install 'genlab[fid]'`).
"""

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from genlab.errors import ConfigError

INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # torch-fidelity's FID Inception


def inception_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS


def check_inception_fid_available() -> None:
    """Raise a one-line ConfigError unless torch-fidelity and the weights are both here."""
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ConfigError(
            "the Inception FID needs torch-fidelity: pip install 'genlab[fid]', "
            "or drop callbacks.sample_quality.inception_fid=true"
        )
    path = inception_weights_path()
    if not path.is_file():
        raise ConfigError(
            f"the Inception weights are not in {path} and cannot be downloaded offline; copy "
            f"{INCEPTION_WEIGHTS} there or drop callbacks.sample_quality.inception_fid=true"
        )


def to_inception_input(images: Tensor) -> Tensor:
    """[-1, 1] images with 1 or 3 channels -> 3-channel [0, 1] images."""
    images = (images.float() + 1) / 2
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.no_grad()
def inception_fid_score(real: Tensor, fake: Tensor, batch_size: int = 200) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=2048, normalize=True)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            fid.update(to_inception_input(images[start : start + batch_size]), real=is_real)
    return float(fid.compute())
