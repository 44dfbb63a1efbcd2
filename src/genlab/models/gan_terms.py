"""The GAN variants' extra pieces, each a small term.

A plain GAN's D minimises `loss.discriminator(D(x), D(G(z)))` and its G minimises
`loss.generator(D(G(z)))`. Most variants add one piece to one of those, or constrain D after
its update. Each piece is a term here; `GAN.discriminator_step` and `GAN.generator_step`
add up what the model's terms give, so that a new variant is a term and a config, not a
branch in the step. The model configs list every term with its weight (0: off); for
example `model=wgan_gp` is `model=gan` with `terms.gradient_penalty.weight: 10`.

| term                   | paper                          | D                         | G                      |
|------------------------|--------------------------------|---------------------------|------------------------|
| `GradientPenalty`      | WGAN-GP, Gulrajani et al. 2017 | gradient norm penalty     |                        |
| `R1Penalty`            | R1, Mescheder et al. 2018      | gradient on real samples  |                        |
| `WeightClipping`       | WGAN, Arjovsky et al. 2017     | clamps weights after step |                        |
| `AuxiliaryClassifier`  | ACGAN, Odena et al. 2017       | classifies real and fake  | asks for its class     |
| `TwinClassifier`       | TAC-GAN, Gong et al. 2019      | twin learns G's classes   | subtracts the twin's   |
| `MismatchedLabels`     | GAN-CLS, Reed et al. 2016      | real with wrong labels    |                        |
| `ModeSeeking`          | MSGAN, Mao et al. 2019         |                           | pays for ignoring z    |
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import require
from genlab.losses import AdversarialLoss, gradient_penalty, r1_penalty
from genlab.nets.outputs import DiscriminatorOutput

# what a term adds: the weighted loss, and the statistics to log (detached)
Contribution = tuple[Tensor, dict[str, Tensor]]


@dataclass
class DiscriminatorStep:
    """What one update of D has computed, for its terms to add to."""

    real: Tensor
    fake: Tensor
    labels: Tensor | None
    real_out: DiscriminatorOutput
    fake_out: DiscriminatorOutput
    critic: Callable[[Tensor, Tensor | None], DiscriminatorOutput]  # D as the GAN applies it
    discriminator: nn.Module  # D itself (no input augmentation)
    loss: AdversarialLoss
    num_classes: int
    logging: bool  # whether this step's statistics will be written
    pack: int = 1  # D judges packs of this many samples (PacGAN)


@dataclass
class GeneratorStep:
    """What one update of G has computed, for its terms to add to."""

    z: Tensor
    fake: Tensor
    labels: Tensor | None
    fake_out: DiscriminatorOutput
    logging: bool


class GANTerm:
    """A piece of a GAN variant. Every method defaults to adding nothing."""

    @property
    def active(self) -> bool:
        """False when the term's settings switch it off (a weight of 0): the GAN drops it."""
        return True

    def check(self, gan) -> None:
        """Refuse, with a one-line ConfigError, a GAN this term cannot work with."""

    def discriminator_loss(self, step: DiscriminatorStep) -> Contribution | None:
        return None

    def after_discriminator_update(self, discriminator: nn.Module) -> None:
        pass

    def generator_labels(self, labels: Tensor | None) -> Tensor | None:
        """The labels G draws its batch with (the batch's own by default)."""
        return labels

    def generator_loss(self, step: GeneratorStep) -> Contribution | None:
        return None

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


def check_weight(name: str, weight: float) -> None:
    require(weight >= 0, f"model.terms.{name}.weight must be >= 0 (got {weight})")


class InputGradientPenalty(GANTerm):
    """A penalty on D's gradient with respect to its input (D itself, without the input
    augmentation): D pays `scale` x `weight` x the subclass's `penalty`, logged as `stat`."""

    name, stat, scale = "", "", 1.0

    def __init__(self, weight: float) -> None:
        check_weight(self.name, weight)
        self.weight = weight

    @property
    def active(self) -> bool:
        return self.weight > 0

    def penalty(self, critic: Callable[[Tensor], Tensor], step: DiscriminatorStep) -> Tensor:
        raise NotImplementedError

    def discriminator_loss(self, step: DiscriminatorStep) -> Contribution:
        def critic(x: Tensor) -> Tensor:
            return step.discriminator(x, step.labels).score

        penalty = self.penalty(critic, step)
        return self.scale * self.weight * penalty, {self.stat: penalty.detach()}


class GradientPenalty(InputGradientPenalty):
    """WGAN-GP: D pays `weight` x E[(|grad D(x_hat)| - 1)^2] on random interpolates x_hat
    of real and generated samples (a soft 1-Lipschitz constraint on the critic). A packed D
    is penalised per pack: one interpolate of the whole pack, the norm over all of it."""

    name, stat = "gradient_penalty", "loss/gp"

    def __init__(self, weight: float = 10.0) -> None:
        super().__init__(weight)

    def penalty(self, critic: Callable[[Tensor], Tensor], step: DiscriminatorStep) -> Tensor:
        return gradient_penalty(critic, step.real, step.fake, group=step.pack)


class R1Penalty(InputGradientPenalty):
    """R1 (Mescheder et al. 2018): D pays `weight` / 2 x E[|grad D(x)|^2] on real samples,
    so that at equilibrium it is flat on the data and G's samples have no slope to follow
    away from it. It suits any loss; with the non-saturating one it is the regulariser of
    StyleGAN. A packed D is penalised per pack."""

    name, stat, scale = "r1_penalty", "loss/r1", 0.5

    def __init__(self, weight: float = 0.0) -> None:
        super().__init__(weight)

    def penalty(self, critic: Callable[[Tensor], Tensor], step: DiscriminatorStep) -> Tensor:
        return r1_penalty(critic, step.real, group=step.pack)


class WeightClipping(GANTerm):
    """WGAN's crude Lipschitz constraint: after each update every weight of D is clamped
    to [-clip, clip]."""

    def __init__(self, clip: float | None = None) -> None:
        require(
            clip is None or clip > 0,
            f"model.terms.weight_clipping.clip must be > 0 or null (got {clip})",
        )
        self.clip = clip

    @property
    def active(self) -> bool:
        return self.clip is not None

    @torch.no_grad()
    def after_discriminator_update(self, discriminator: nn.Module) -> None:
        for parameter in discriminator.parameters():
            parameter.clamp_(-self.clip, self.clip)


def needs_class_logits(out: DiscriminatorOutput, term: str) -> Tensor:
    require(
        out.class_logits is not None,
        f"model.terms.{term} needs a discriminator with a class head: set "
        f"model.discriminator.aux_classes=${{model.num_classes}} (e.g. model=acgan)",
    )
    return out.class_logits


class AuxiliaryClassifier(GANTerm):
    """ACGAN: D's class head names the class of real samples (weight `weight`) and of
    generated ones (`weight_fake`, default `weight`; 0 anchors the classifier to real data
    only, so that G cannot drift to a permutation of the classes), and G is asked for
    samples the head puts in the class they were drawn for (`weight_g`, default `weight`).
    With `confidence_g`, G's cross-entropy of each sample is clipped from below at
    -log(confidence_g): no pull on samples already named with that probability, which
    would only push every sample of a class towards the one image D is surest of."""

    def __init__(
        self,
        weight: float = 1.0,
        weight_fake: float | None = None,
        weight_g: float | None = None,
        confidence_g: float | None = None,
    ) -> None:
        check_weight("auxiliary_classifier", weight)
        require(
            confidence_g is None or 0 < confidence_g < 1,
            f"model.terms.auxiliary_classifier.confidence_g must lie in (0, 1) or be null "
            f"(got {confidence_g})",
        )
        self.weight = weight
        self.weight_fake = weight if weight_fake is None else weight_fake
        self.weight_g = weight if weight_g is None else weight_g
        self.floor_g = 0.0 if confidence_g is None else -math.log(confidence_g)

    @property
    def active(self) -> bool:
        return self.weight > 0 or self.weight_fake > 0 or self.weight_g > 0

    def check(self, gan) -> None:
        require(
            gan.num_classes > 0,
            "ACGAN's auxiliary classifier needs labels: set model.num_classes=${data.num_classes}",
        )

    def discriminator_loss(self, step: DiscriminatorStep) -> Contribution:
        real_logits = needs_class_logits(step.real_out, "auxiliary_classifier")
        aux_real = F.cross_entropy(real_logits, step.labels)
        aux_fake = F.cross_entropy(step.fake_out.class_logits, step.labels)
        stats = {"loss/aux_d": (aux_real + aux_fake).detach()}
        if step.logging:
            stats["d/aux_acc"] = (real_logits.argmax(1) == step.labels).float().mean()
        return self.weight * aux_real + self.weight_fake * aux_fake, stats

    def generator_loss(self, step: GeneratorStep) -> Contribution:
        logits = needs_class_logits(step.fake_out, "auxiliary_classifier")
        term = self.classification(logits, step.labels)
        return self.weight_g * term, {"loss/aux_g": term.detach()}

    def classification(self, logits: Tensor, labels: Tensor) -> Tensor:
        """G's cross-entropy, each sample's clipped from below at the confidence floor."""
        return F.cross_entropy(logits, labels, reduction="none").clamp(min=self.floor_g).mean()


class TwinClassifier(GANTerm):
    """TAC-GAN, on top of ACGAN's classifier: a twin head learns, on generated samples, which
    class G was asked for (weight `weight`), and G's loss subtracts the twin's cross-entropy
    (weight `weight_g`), so that G cannot please the classifier by drawing only the
    easiest sample of each class."""

    def __init__(self, weight: float = 1.0, weight_g: float | None = None) -> None:
        check_weight("twin_classifier", weight)
        self.weight = weight
        self.weight_g = weight if weight_g is None else weight_g

    @property
    def active(self) -> bool:
        return self.weight > 0 or self.weight_g > 0

    def check(self, gan) -> None:
        require(
            any(isinstance(term, AuxiliaryClassifier) for term in gan.terms),
            "TAC-GAN's twin classifier works beside ACGAN's: set "
            "model.terms.auxiliary_classifier.weight > 0 (e.g. model=tacgan)",
        )

    def twin_logits(self, out: DiscriminatorOutput) -> Tensor:
        require(
            out.twin_logits is not None,
            "model.terms.twin_classifier needs a discriminator with a twin head: set "
            "model.discriminator.twin_classes=${model.num_classes} (e.g. model=tacgan)",
        )
        return out.twin_logits

    def discriminator_loss(self, step: DiscriminatorStep) -> Contribution:
        twin = F.cross_entropy(self.twin_logits(step.fake_out), step.labels)
        return self.weight * twin, {"loss/twin_d": twin.detach()}

    def generator_loss(self, step: GeneratorStep) -> Contribution:
        twin = F.cross_entropy(self.twin_logits(step.fake_out), step.labels)
        return -self.weight_g * twin, {"loss/twin_g": twin.detach()}


class MismatchedLabels(GANTerm):
    """GAN-CLS: a conditional D also sees real samples with wrong labels as negatives, so
    that it must check the label and not only the sample. They take `weight` of D's loss on
    negatives, generated samples the rest (Reed et al.: one half each)."""

    def __init__(self, weight: float = 0.5) -> None:
        require(
            0 <= weight <= 1,
            f"model.terms.mismatched_labels.weight must lie in [0, 1] (got {weight})",
        )
        self.weight = weight

    @property
    def active(self) -> bool:
        return self.weight > 0

    def check(self, gan) -> None:
        require(
            gan.num_classes >= 2,
            "model.terms.mismatched_labels needs a conditional model with at least 2 classes",
        )

    def discriminator_loss(self, step: DiscriminatorStep) -> Contribution:
        labels = step.labels
        shift = torch.randint(1, step.num_classes, labels.shape, device=labels.device)
        wrong = step.critic(step.real, (labels + shift) % step.num_classes).score
        mismatched = step.loss.fake_loss(wrong)
        extra = self.weight * (mismatched - step.loss.fake_loss(step.fake_out.score))
        return extra, {"loss/mismatched_d": mismatched.detach()}


def mode_seeking_ratio(z: Tensor, fake: Tensor) -> Tensor:
    """MSGAN's ratio for the pairs (sample i, sample i + n/2): mean |G(z1) - G(z2)| over
    mean |z1 - z2|. Near 0 when G ignores its noise."""
    half = len(z) // 2
    image_gap = (fake[:half] - fake[half : 2 * half]).abs().mean()
    noise_gap = (z[:half] - z[half : 2 * half]).abs().mean()
    return image_gap / noise_gap


class ModeSeeking(GANTerm):
    """MSGAN: G draws its batch in pairs of one class (sample i + n/2 repeats sample i's
    label) and pays `weight` / (|G(z1) - G(z2)| / |z1 - z2|), so that it cannot map every z
    of a class to one image."""

    def __init__(self, weight: float = 1.0) -> None:
        check_weight("mode_seeking", weight)
        self.weight = weight

    @property
    def active(self) -> bool:
        return self.weight > 0

    def generator_labels(self, labels: Tensor | None) -> Tensor | None:
        if labels is None or len(labels) < 2:
            return labels
        half = len(labels) // 2
        return torch.cat([labels[:half], labels[:half], labels[2 * half :]])

    def generator_loss(self, step: GeneratorStep) -> Contribution | None:
        if len(step.z) < 2:
            return None
        diversity = mode_seeking_ratio(step.z, step.fake)
        return self.weight / (diversity + 1e-5), {"g/diversity": diversity.detach()}
