"""PacGAN's packing (Lin et al. 2018): the discriminator judges m samples at once.

`pack(x, m)` joins each run of m consecutive samples into one input, along the channel axis
for images (m x C channels) and along the feature axis for points (m x D features);
`PackedDiscriminator` does it in front of any unconditional discriminator built for the
packed shape. Real samples are packed with real ones and generated with generated ones, so
D's loss, its scores and every term on them stay the same functions of D's outputs: there
are simply n / m of them per batch. A gradient penalty takes one interpolation weight and
one gradient norm per pack (`losses.gradient_penalty(..., group=m)`), the norm of D's
gradient with respect to its whole (packed) input.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from genlab.errors import require
from genlab.nets.outputs import DiscriminatorOutput


def packed_shape(shape: Sequence[int], m: int) -> tuple[int, ...]:
    """The shape D sees: `m` times the channels of an image, or the features of a point."""
    return (shape[0] * m, *shape[1:])


def pack(x: Tensor, m: int) -> Tensor:
    """(n, C, ...) -> (n / m, m * C, ...): sample i of a pack is channels i*C .. (i+1)*C - 1."""
    require(
        len(x) % m == 0,
        f"a batch of {len(x)} samples cannot be packed {m} at a time: make data.batch_size a "
        f"multiple of model.pack={m}",
    )
    return x.reshape(len(x) // m, m * x.shape[1], *x.shape[2:])


class PackedDiscriminator(nn.Module):
    """D on packs of `pack` samples: one score per pack."""

    def __init__(self, discriminator: nn.Module, pack: int) -> None:
        super().__init__()
        require(pack >= 2, f"a packed discriminator packs >= 2 samples (got {pack})")
        self.discriminator = discriminator
        self.pack = pack

    def forward(self, x: Tensor, labels: Tensor | None = None) -> DiscriminatorOutput:
        return self.discriminator(pack(x, self.pack))


def packing_of(discriminator: nn.Module) -> int:
    """How many samples `discriminator` judges at once (1 unless it is packed)."""
    return discriminator.pack if isinstance(discriminator, PackedDiscriminator) else 1
