"""The model contract: everything the callbacks and the entry points may ask of a model.

Every genlab model is a `GenerativeModule` (genlab/models/base.py), which makes it
`Guarded`. Beyond that it has one or more of the capabilities below; the callbacks check
which with `isinstance` (the protocols are runtime-checkable) and use nothing else:

| capability          | used by                                   | models                  |
|---------------------|-------------------------------------------|-------------------------|
| `Sampler`           | sample pictures, sample metrics, sampling | GANs, VAEs, PixelCNN/RNN|
| `PairSampler`       | pair metrics (instead of sample metrics)  | CoGAN                   |
| `Translator`        | translation pictures and metrics          | pix2pix, CycleGAN, UNIT |
| `HeldOutLikelihood` | held-out ELBO, IWAE, NLL, bits/dim        | VAEs, PixelCNN/RNN      |
| `Figures`           | the model's own pictures                  | VAEs, translators, StackGAN |
| `LossCharts`        | TensorBoard's CUSTOM SCALARS layout       | every model             |
| `Guarded`           | the divergence guard                      | every model             |

docs/adding-a-model.md shows a new model through these, file by file.
"""

from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

# A picture a model draws for the run's record: the images (or 2-D points), their labels
# (or None) and the images per row of the grid (0: a scatter of points).
Figure = tuple[Tensor, Tensor | None, int]


class GuardReadings(NamedTuple):
    """What the divergence guard reads after a step: the step's losses (tensors, read in one
    device sync every few steps) and, for models with a discriminator whose scores are
    decisions, D's weaker accuracy on real or generated samples (None otherwise)."""

    losses: dict[str, Tensor]
    saturation: Tensor | None = None


@runtime_checkable
class Sampler(Protocol):
    """Draws new samples from noise (and labels, for conditional models)."""

    num_classes: int

    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """n samples in data space (points N x D, images N x C x H x W in [-1, 1]) on the
        model's device; reproducible when `generator` (a CPU generator) is given."""

    def resolve_labels(self, n: int, labels: Tensor | int | None) -> Tensor | None:
        """The labels to draw n samples with: None for unconditional models, the classes
        spread evenly when `labels` is None, else the given labels checked."""

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""


@runtime_checkable
class PairSampler(Protocol):
    """Draws pairs from noise, one image in each of two domains from one z (CoGAN)."""

    def sample_pairs(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """n A images and the n B images drawn with them, in [-1, 1], on the model's device;
        reproducible when `generator` (a CPU generator) is given."""


def draws_pairs(model_class: type) -> bool:
    """Whether `model_class` builds PairSamplers: asked of the configured class before the
    model is built, since such a model needs two image domains."""
    return callable(getattr(model_class, "sample_pairs", None))


@runtime_checkable
class Translator(Protocol):
    """Translates images between two domains, A -> B ('ab') and, two-way, B -> A ('ba')."""

    directions: tuple[str, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """The translated images, in eval mode, on the model's device."""


def translates(model_class: type) -> bool:
    """Whether `model_class` builds Translators: asked of the configured class before the
    model is built, to tell a translation model from a generative one."""
    return callable(getattr(model_class, "translate", None)) and hasattr(model_class, "directions")


@runtime_checkable
class HeldOutLikelihood(Protocol):
    """Explicit-density models: their likelihood on held-out data, per image, in nats."""

    def held_out_metrics(self, x: Tensor, labels: Tensor | None, seed: int = 0) -> dict[str, float]:
        """Held-out metrics by name (`nll`, `bpd`, `elbo`, ...), the same for the same seed."""


@runtime_checkable
class Figures(Protocol):
    """Pictures of the model's own beyond the sample grid (reconstructions, translations)."""

    def figures(
        self, *eval_set: Tensor, generator: torch.Generator, per_row: int = 8
    ) -> dict[str, Figure]:
        """Figures by name, from the datamodule's `eval_set()`; one named `grid` is the
        model's main picture (`samples/epoch_XXX.png`)."""


@runtime_checkable
class LossCharts(Protocol):
    """Which logged curves TensorBoard draws together: chart title -> scalar tags."""

    loss_charts: dict[str, list[str]]


@runtime_checkable
class Guarded(Protocol):
    """Hands the divergence guard what to check after each step."""

    def guard_readings(self) -> GuardReadings:
        """The latest step's readings."""

    def divergence_advice(self) -> str:
        """What to try when the run diverges, e.g. `lower model.lr (now 0.0002)`."""
