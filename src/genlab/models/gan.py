"""One GAN LightningModule for the whole family.

GAN, cGAN, DCGAN, WGAN, WGAN-GP, LSGAN and ACGAN are the same alternating game played
with other nets, another loss and another number of critic steps; each is a config.
"""

import copy
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from genlab.errors import check_num_classes, require
from genlab.losses import AdversarialLoss, gradient_penalty
from genlab.models.base import GenerativeModule, evaluating
from genlab.nets.augment import DiffAugment

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


def mode_seeking_ratio(z: Tensor, fake: Tensor) -> Tensor:
    """MSGAN's ratio for the pairs (sample i, sample i + n/2): mean |G(z1) - G(z2)| over
    mean |z1 - z2|. Near 0 when G ignores its noise."""
    half = len(z) // 2
    image_gap = (fake[:half] - fake[half : 2 * half]).abs().mean()
    noise_gap = (z[:half] - z[half : 2 * half]).abs().mean()
    return image_gap / noise_gap


class GAN(GenerativeModule):
    """Alternating updates under manual optimization.

    Each batch makes `critic_steps` updates of D (fresh noise each time) and then one
    update of G, so an epoch has as many G updates as batches whatever the loss. Mind that
    `global_step` counts optimizer steps: `critic_steps + 1` per batch.
    """

    optimizer_names = ("g", "d")
    loss_charts = {"D and G losses": ["loss/d", "loss/g"], "D(x) and D(G(z))": ["d/real", "d/fake"]}

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: AdversarialLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        latent_dim: int,
        num_classes: int = 0,
        critic_steps: int = 1,
        lr: float = 2e-4,
        lr_g: float | None = None,
        lr_d: float | None = None,
        betas_g: Sequence[float] = (0.5, 0.999),
        betas_d: Sequence[float] = (0.5, 0.999),
        gp_weight: float = 0.0,
        weight_clip: float | None = None,
        grad_clip_g: float | None = None,
        grad_clip_d: float | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        aux_weight: float = 0.0,
        aux_weight_fake: float | None = None,
        aux_weight_g: float | None = None,
        mismatched_labels: bool = False,
        ema_decay: float | None = None,
        augment: Sequence[str] | None = None,
        aux_confidence_g: float | None = None,
        mode_seeking_weight: float = 0.0,
    ) -> None:
        super().__init__()
        lr_g = lr if lr_g is None else lr_g
        lr_d = lr if lr_d is None else lr_d
        require(lr > 0, f"model.lr must be > 0 (got {lr}); try model.lr=2e-4")
        require(lr_g > 0, f"model.lr_g must be > 0 (got {lr_g}); try model.lr_g=2e-4")
        require(lr_d > 0, f"model.lr_d must be > 0 (got {lr_d}); try model.lr_d=2e-4")
        require(critic_steps >= 1, f"model.critic_steps must be >= 1 (got {critic_steps})")
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        check_num_classes(num_classes)
        require(gp_weight >= 0, f"model.gp_weight must be >= 0 (got {gp_weight})")
        require(
            not mismatched_labels or num_classes >= 2,
            "model.mismatched_labels needs a conditional model with at least 2 classes",
        )
        require(
            aux_weight == 0 or num_classes > 0,
            "ACGAN's auxiliary classifier needs labels: set model.num_classes=${data.num_classes}",
        )
        require(
            weight_clip is None or weight_clip > 0,
            f"model.weight_clip must be > 0 or null (got {weight_clip})",
        )
        self.save_hyperparameters(
            ignore=[
                "generator",
                "discriminator",
                "loss",
                "optimizer_g",
                "optimizer_d",
                "lr_scheduler",
            ],
            logger=False,
        )
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.critic_steps = critic_steps
        self.gp_weight = gp_weight
        self.weight_clip = weight_clip
        self.grad_clip_g = grad_clip_g
        self.grad_clip_d = grad_clip_d
        self.lr_scheduler = lr_scheduler
        self.aux_weight = aux_weight
        # GAN-CLS (Reed et al. 2016): D also sees real samples with wrong labels as fakes, so
        # it must check the label, not only the sample
        self.mismatched_labels = mismatched_labels
        # An exponential moving average of G's weights (Yazici et al. 2019) draws the samples:
        # it smooths the oscillations of the game. Saved and restored with the checkpoints.
        require(
            ema_decay is None or 0 < ema_decay < 1,
            f"model.ema_decay must lie in (0, 1) or be null (got {ema_decay})",
        )
        self.ema_decay = ema_decay
        self.generator_ema = None
        if ema_decay is not None:
            self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # D's classification term on generated samples (ACGAN has it; 0 anchors D's classifier
        # to real data only, so that G cannot drift to a permutation of the classes)
        self.aux_weight_fake = aux_weight if aux_weight_fake is None else aux_weight_fake
        # G's classification term: a smaller weight than D's asks G for recognisable digits
        # without pushing every sample of a class to the one D is surest of
        self.aux_weight_g = aux_weight if aux_weight_g is None else aux_weight_g
        # ... and it stops pulling once D's classifier names a sample's class with this
        # probability: past that point cross-entropy only pushes every sample of a class
        # towards the one image D is surest of, which collapses the class
        require(
            aux_confidence_g is None or 0 < aux_confidence_g < 1,
            f"model.aux_confidence_g must lie in (0, 1) or be null (got {aux_confidence_g})",
        )
        self.aux_floor_g = 0.0 if aux_confidence_g is None else -math.log(aux_confidence_g)
        # MSGAN (Mao et al. 2019): G is charged 1 / (|G(z1) - G(z2)| / |z1 - z2|) for pairs of
        # samples of the same class, so that it cannot map every z of a class to one image
        require(
            mode_seeking_weight >= 0,
            f"model.mode_seeking_weight must be >= 0 (got {mode_seeking_weight})",
        )
        self.mode_seeking_weight = mode_seeking_weight
        self.last_scores: tuple[Tensor, Tensor] | None = None
        # DiffAugment: D sees real and generated images through the same random transforms
        self.augment = DiffAugment(augment) if augment else None

    def configure_optimizers(self):
        optimizers = [
            self.optimizer_g(self.generator.parameters()),
            self.optimizer_d(self.discriminator.parameters()),
        ]
        if self.lr_scheduler is None:
            return optimizers
        return optimizers, [self.lr_scheduler(optimizer) for optimizer in optimizers]

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generator(z, labels)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, labels = batch
        labels = labels if self.conditional else None
        opt_g, opt_d = self.optimizers()

        # 1. Train D to tell real samples from G(z), with G held fixed (critic_steps times).
        for _ in range(self.critic_steps):
            d_stats = self.discriminator_step(real, labels, opt_d)

        # 2. Train G so that D scores G(z) as real, with D held fixed.
        g_stats = self.generator_step(real.shape[0], labels, opt_g)
        if self.generator_ema is not None:
            self.update_ema()

        # what the divergence guard watches (no sync here: it reads them every few steps)
        self.guard_values = {"loss/d": d_stats["loss/d"], "loss/g": g_stats["loss/g"]}

        if self.logging_this_step():
            self.log_dict(d_stats | g_stats | self.score_stats(*self.last_scores), on_step=True)

    @property
    def guard_saturation(self) -> Tensor | None:
        """D's weaker accuracy (on real or on fake samples) at the last D step, computed only
        when the divergence guard asks for it."""
        if self.last_scores is None or self.loss.decision_threshold is None:
            return None
        stats = self.score_stats(*self.last_scores)
        return torch.minimum(stats["d/acc_real"], stats["d/acc_fake"])

    def critic(
        self, x: Tensor, labels: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """D's scores and, for an auxiliary-classifier D (ACGAN), its class logits, and for a
        twin-classifier D (TAC-GAN) the logits of the twin that learns G's classes."""
        if self.augment is not None:
            x = self.augment(x)
        out = self.discriminator(x, labels)
        if not isinstance(out, tuple):
            return out, None, None
        return out if len(out) == 3 else (*out, None)

    def discriminator_step(self, real: Tensor, labels: Tensor | None, opt_d) -> dict[str, Tensor]:
        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.generator(self.noise((real.shape[0], self.latent_dim)), labels)
            real_scores, real_logits, _ = self.critic(real, labels)
            fake_scores, fake_logits, fake_twin = self.critic(fake, labels)
            if self.mismatched_labels and labels is not None:
                shift = torch.randint(1, self.num_classes, labels.shape, device=labels.device)
                mismatched_scores, *_ = self.critic(real, (labels + shift) % self.num_classes)
                loss = self.loss.discriminator(
                    real_scores, torch.cat([fake_scores, mismatched_scores])
                )
            else:
                loss = self.loss.discriminator(real_scores, fake_scores)
            # D's scores, for the logged statistics and the guard, computed when needed
            self.last_scores = (real_scores.detach(), fake_scores.detach())
            stats = {"loss/d": loss.detach()}
            if self.gp_weight > 0:
                penalty = gradient_penalty(self.discriminator, real, fake, labels)
                loss = loss + self.gp_weight * penalty
                stats["loss/gp"] = penalty.detach()
            if real_logits is not None:
                # ACGAN: D also names the class of real and generated samples.
                aux_real = F.cross_entropy(real_logits, labels)
                aux_fake = F.cross_entropy(fake_logits, labels)
                loss = loss + self.aux_weight * aux_real + self.aux_weight_fake * aux_fake
                stats["loss/aux_d"] = (aux_real + aux_fake).detach()
                if fake_twin is not None:
                    # TAC-GAN: the twin classifier learns which class G meant, on G's samples
                    twin = F.cross_entropy(fake_twin, labels)
                    loss = loss + self.aux_weight * twin
                    stats["loss/twin_d"] = twin.detach()
                if self.logging_this_step():
                    stats["d/aux_acc"] = (real_logits.argmax(1) == labels).float().mean()
            self.optimize(loss, opt_d, self.grad_clip_d)
            if self.weight_clip:
                # WGAN's crude Lipschitz constraint: clamp every critic weight to [-c, c].
                with torch.no_grad():
                    for parameter in self.discriminator.parameters():
                        parameter.clamp_(-self.weight_clip, self.weight_clip)
        return stats

    def score_stats(self, real_scores: Tensor, fake_scores: Tensor) -> dict[str, Tensor]:
        """D(real), D(fake), D's accuracy where scores are decisions, the Wasserstein estimate
        where they are critic values."""
        stats = {"d/real": self.loss.readout(real_scores), "d/fake": self.loss.readout(fake_scores)}
        threshold = self.loss.decision_threshold
        if threshold is None:
            stats["wasserstein"] = real_scores.mean() - fake_scores.mean()
        else:
            stats["d/acc_real"] = (real_scores > threshold).float().mean()
            stats["d/acc_fake"] = (fake_scores <= threshold).float().mean()
        return stats

    def generator_step(self, n: int, labels: Tensor | None, opt_g) -> dict[str, Tensor]:
        with self.toggled_optimizer(opt_g):
            z = self.noise((n, self.latent_dim))
            mode_seeking = self.mode_seeking_weight > 0 and n >= 2
            if mode_seeking and labels is not None:
                # MSGAN's pairs: the second half of the batch repeats the first half's labels
                half = n // 2
                labels = torch.cat([labels[:half], labels[:half], labels[2 * half :]])
            fake = self.generator(z, labels)
            fake_scores, fake_logits, fake_twin = self.critic(fake, labels)
            loss = self.loss.generator(fake_scores)
            stats = {"loss/g": loss.detach()}
            if mode_seeking:
                diversity = mode_seeking_ratio(z, fake)
                loss = loss + self.mode_seeking_weight / (diversity + 1e-5)
                stats["g/diversity"] = diversity.detach()
            if fake_logits is not None:
                aux = self.generator_classification(
                    fake_logits, fake_twin, labels, self.aux_floor_g
                )
                loss = loss + self.aux_weight_g * aux
                stats["loss/aux_g"] = aux.detach()
            self.optimize(loss, opt_g, self.grad_clip_g)
        return stats

    @staticmethod
    def generator_classification(
        logits: Tensor, twin_logits: Tensor | None, labels: Tensor, floor: float = 0.0
    ) -> Tensor:
        """G's classification term: ACGAN's cross-entropy of D's classifier on G's samples,
        each sample's clipped from below at `floor` (no gradient for samples already named
        with probability exp(-floor)); TAC-GAN subtracts the twin's, so that G cannot please
        the classifier by drawing only the easiest-to-classify sample of each class."""
        term = F.cross_entropy(logits, labels, reduction="none").clamp(min=floor).mean()
        if twin_logits is not None:
            term = term - F.cross_entropy(twin_logits, labels)
        return term

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- d * ema + (1 - d) * G, with d ramped up as (1 + t) / (10 + t) at first so
        that the average forgets the random initialisation quickly; buffers (BatchNorm's
        running statistics) are copied. The decay is computed where the count lives, so
        that a GPU run never waits to read it back (one sync a step otherwise)."""
        self.ema_updates += 1
        t = self.ema_updates.float()
        weight = 1 - ((1 + t) / (10 + t)).clamp(max=self.ema_decay)
        for average, parameter in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            average.lerp_(parameter, weight)
        for ema_buffer, buffer in zip(
            self.generator_ema.buffers(), self.generator.buffers(), strict=True
        ):
            ema_buffer.copy_(buffer)

    @torch.no_grad()
    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        labels = self.resolve_labels(n, labels)
        net = self.generator if self.generator_ema is None else self.generator_ema
        with evaluating(net):
            return net(self.noise((n, self.latent_dim), generator), labels).float()
