"""The one output type of a GAN's discriminator."""

from typing import NamedTuple

from torch import Tensor


class DiscriminatorOutput(NamedTuple):
    """What a GAN's discriminator returns for a batch of N samples: one unnormalised score
    per sample (N), and, for a discriminator with a class head (ACGAN), class logits
    (N x classes), and with a twin head (TAC-GAN), the twin's logits (N x classes)."""

    score: Tensor
    class_logits: Tensor | None = None
    twin_logits: Tensor | None = None
