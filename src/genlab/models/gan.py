"""One GAN LightningModule for the whole family.

GAN, cGAN, DCGAN, WGAN, WGAN-GP, LSGAN, ACGAN and TAC-GAN are the same alternating game
played with other nets, another loss, another number of critic steps and a few extra terms
(genlab/models/gan_terms.py); each is a config.
"""

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from genlab.contract import GuardReadings
from genlab.errors import check_num_classes, require
from genlab.losses import AdversarialLoss
from genlab.models.base import (
    OptimizerFactory,
    SamplingModule,
    SchedulerFactory,
    check_ema_decay,
    evaluating,
    make_optimizer,
    players_settings,
    update_moving_average,
)
from genlab.models.gan_terms import DiscriminatorStep, GANTerm, GeneratorStep
from genlab.nets.augment import DiffAugment
from genlab.nets.outputs import DiscriminatorOutput
from genlab.nets.packing import packing_of


class GAN(SamplingModule):
    """Alternating updates under manual optimization.

    Each batch makes `critic_steps` updates of D (fresh noise each time) and then one
    update of G, so an epoch has as many G updates as batches whatever the loss. Mind that
    `global_step` counts optimizer steps: `critic_steps + 1` per batch.

    The optimizers are built here from `lr_g`/`lr_d` (both `lr` unless set) and
    `betas_g`/`betas_d` (null for optimizers without betas, such as WGAN's RMSprop); the
    factories bring the rest (`fused`, ...).
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
        betas_g: Sequence[float] | None = (0.5, 0.999),
        betas_d: Sequence[float] | None = (0.5, 0.999),
        terms: Mapping[str, GANTerm | None] | None = None,
        grad_clip_g: float | None = None,
        grad_clip_d: float | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        ema_decay: float | None = None,
        augment: Sequence[str] | None = None,
        pack: int = 1,
    ) -> None:
        super().__init__()
        require(
            packing_of(discriminator) == pack,
            f"model.pack={pack} but the discriminator packs {packing_of(discriminator)}: leave "
            "model.discriminator.pack at '${model.pack}'",
        )
        self.lr_g, self.lr_d, self.betas_g, self.betas_d = players_settings(
            optimizer_g, optimizer_d, lr, lr_g, lr_d, betas_g, betas_d
        )
        require(critic_steps >= 1, f"model.critic_steps must be >= 1 (got {critic_steps})")
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        check_num_classes(num_classes)
        check_ema_decay(ema_decay)
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "loss", "optimizer_g", "optimizer_d",
                    "lr_scheduler", "terms"],
            logger=False,
        )  # fmt: skip
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.lr_scheduler = lr_scheduler
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.critic_steps = critic_steps
        self.pack = pack  # D judges packs of this many samples (PacGAN)
        self.grad_clip_g = grad_clip_g
        self.grad_clip_d = grad_clip_d
        # the variant's extra pieces, in the config's order; those switched off are left out
        self.terms = [t for t in (terms or {}).values() if t is not None and t.active]
        for term in self.terms:
            term.check(self)
        # An exponential moving average of G's weights (Yazici et al. 2019) draws the samples:
        # it smooths the oscillations of the game. Saved and restored with the checkpoints.
        self.ema_decay = ema_decay
        self.generator_ema = None
        if ema_decay is not None:
            self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # DiffAugment: D sees real and generated images through the same random transforms
        self.augment = DiffAugment(augment) if augment else None
        self.latest_scores: tuple[Tensor, Tensor] | None = None  # for the guard

    def configure_optimizers(self):
        optimizers = [
            make_optimizer(self.optimizer_g, self.generator.parameters(), self.lr_g, self.betas_g),
            make_optimizer(
                self.optimizer_d, self.discriminator.parameters(), self.lr_d, self.betas_d
            ),
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

        logging = self.logging_this_step()

        # 1. Train D to tell real samples from G(z), with G held fixed (critic_steps times).
        for _ in range(self.critic_steps):
            d_stats, scores = self.discriminator_step(real, labels, opt_d, logging)

        # 2. Train G so that D scores G(z) as real, with D held fixed.
        g_stats = self.generator_step(real.shape[0], labels, opt_g, logging)
        if self.generator_ema is not None:
            self.update_ema()

        # what the divergence guard watches (no sync here: it reads them every few steps)
        self.guard_values = {"loss/d": d_stats["loss/d"], "loss/g": g_stats["loss/g"]}
        self.latest_scores = scores
        if logging:
            self.log_step_metrics(d_stats | g_stats | self.score_stats(*scores))

    def critic(self, x: Tensor, labels: Tensor | None) -> DiscriminatorOutput:
        """D's view of a batch, through the input augmentation when there is one."""
        if self.augment is not None:
            x = self.augment(x)
        return self.discriminator(x, labels)

    def discriminator_step(
        self, real: Tensor, labels: Tensor | None, opt_d, logging: bool = False
    ) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        """One update of D; its statistics, and D's scores on the real and generated batch."""
        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.generator(self.noise((real.shape[0], self.latent_dim)), labels)
            real_out = self.critic(real, labels)
            fake_out = self.critic(fake, labels)
            loss = self.loss.discriminator(real_out.score, fake_out.score)
            stats = {"loss/d": loss.detach()}
            step = DiscriminatorStep(
                real, fake, labels, real_out, fake_out, self.critic, self.discriminator,
                self.loss, self.num_classes, logging, self.pack,
            )  # fmt: skip
            for term in self.terms:
                loss = add(term.discriminator_loss(step), loss, stats)
            self.optimize(loss, opt_d, self.grad_clip_d)
            for term in self.terms:
                term.after_discriminator_update(self.discriminator)
        return stats, (real_out.score.detach(), fake_out.score.detach())

    def generator_step(
        self, n: int, labels: Tensor | None, opt_g, logging: bool = False
    ) -> dict[str, Tensor]:
        """One update of G; its statistics."""
        with self.toggled_optimizer(opt_g):
            for term in self.terms:
                labels = term.generator_labels(labels)
            z = self.noise((n, self.latent_dim))
            fake = self.generator(z, labels)
            fake_out = self.critic(fake, labels)
            loss = self.loss.generator(fake_out.score)
            stats = {"loss/g": loss.detach()}
            step = GeneratorStep(z, fake, labels, fake_out, logging)
            for term in self.terms:
                loss = add(term.generator_loss(step), loss, stats)
            self.optimize(loss, opt_g, self.grad_clip_g)
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

    def guard_readings(self) -> GuardReadings:
        """The losses, and D's weaker accuracy (on real or on generated samples) at the last
        D step where scores are decisions, computed only when the guard asks."""
        readings = super().guard_readings()
        if self.latest_scores is None or self.loss.decision_threshold is None:
            return readings
        stats = self.score_stats(*self.latest_scores)
        saturation = torch.minimum(stats["d/acc_real"], stats["d/acc_fake"])
        return readings._replace(saturation=saturation)

    def divergence_advice(self) -> str:
        return f"{super().divergence_advice()}, or try model=wgan_gp"

    def update_ema(self) -> None:
        """The moving average of G's weights follows G (`update_moving_average`)."""
        update_moving_average(self.generator_ema, self.generator, self.ema_updates, self.ema_decay)

    @torch.no_grad()
    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        labels = self.resolve_labels(n, labels)
        net = self.generator if self.generator_ema is None else self.generator_ema
        with evaluating(net):
            return net(self.noise((n, self.latent_dim), generator), labels).float()


def add(contribution, loss: Tensor, stats: dict[str, Tensor]) -> Tensor:
    """`loss` plus a term's weighted loss, with the term's statistics put into `stats`."""
    if contribution is None:
        return loss
    extra, term_stats = contribution
    stats.update(term_stats)
    return loss + extra
