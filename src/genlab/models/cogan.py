"""CoGAN (Liu & Tuzel 2016): the joint distribution of two image domains, learnt from
unpaired images of each.

Two GANs, one per domain, whose generators share their first layers and whose
discriminators share their last ones (genlab/nets/cogan.py). One z drawn through both
generators gives a pair (G_A(z), G_B(z)): the shared layers decide what the pair shows, the
domains' own layers how each renders it, so the two images correspond although no pair was
ever seen. `share_layers=0` is the ablation: two independent GANs, whose pairs do not.

`sample` gives each pair side by side (A | B along the width), for the sample grids and
genlab-sample; `sample_pairs` gives the two images apart, for the pair metrics.
"""

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genlab.contract import GuardReadings
from genlab.errors import require
from genlab.losses import AdversarialLoss
from genlab.models.base import (
    OptimizerFactory,
    SamplingModule,
    check_ema_decay,
    evaluating,
    make_optimizer,
    players_settings,
    update_moving_average,
)
from genlab.nets.cogan import DOMAINS, CoupledDiscriminators, CoupledGenerators


def check_sharing(share_layers: int, **nets: nn.Module) -> None:
    """Each coupled net shares as many layers as the model's setting says."""
    for name, net in nets.items():
        require(
            net.shared_layers == share_layers,
            f"model.{name} shares {net.shared_layers} layers but model.share_layers is "
            f"{share_layers}; set model.share_layers and leave the nets' shared_layers "
            f"at '${{model.share_layers}}'",
        )


class CoGAN(SamplingModule):
    """Coupled GANs under manual optimization: each batch, one update of D_A and D_B
    together, then one of G_A and G_B together."""

    optimizer_names = ("g", "d")
    loss_charts = {
        "D and G losses": ["loss/d", "loss/g"],
        "per domain": ["loss/d_a", "loss/d_b", "loss/g_a", "loss/g_b"],
        "D(x) and D(G(z))": ["d/real_a", "d/fake_a", "d/real_b", "d/fake_b"],
    }

    def __init__(
        self,
        generator: CoupledGenerators,
        discriminator: CoupledDiscriminators,
        loss: AdversarialLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        latent_dim: int,
        share_layers: int,
        lr: float = 2e-4,
        lr_g: float | None = None,
        lr_d: float | None = None,
        betas_g: Sequence[float] | None = (0.5, 0.999),
        betas_d: Sequence[float] | None = (0.5, 0.999),
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        self.lr_g, self.lr_d, self.betas_g, self.betas_d = players_settings(
            optimizer_g, optimizer_d, lr, lr_g, lr_d, betas_g, betas_d
        )
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        check_ema_decay(ema_decay)
        check_sharing(share_layers, generator=generator, discriminator=discriminator)
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "loss", "optimizer_g", "optimizer_d"],
            logger=False,
        )
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.latent_dim = latent_dim
        self.share_layers = share_layers
        # the pairs are drawn from a moving average of the generators' weights, when set (as
        # in GAN: genlab/models/gan.py); the copy keeps one shared module, as the original
        self.ema_decay = ema_decay
        self.generator_ema = None
        if ema_decay is not None:
            self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.latest_scores: tuple[Tensor, Tensor] | None = None  # for the guard

    def configure_optimizers(self):
        # a shared layer is one module: each net's parameters() holds its weights once
        return [
            make_optimizer(self.optimizer_g, self.generator.parameters(), self.lr_g, self.betas_g),
            make_optimizer(
                self.optimizer_d, self.discriminator.parameters(), self.lr_d, self.betas_d
            ),
        ]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.generator(z)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        real_a, real_b, _, _ = batch  # unpaired: real_a[i] and real_b[i] show different digits
        real = {"a": real_a, "b": real_b}
        opt_g, opt_d = self.optimizers()
        n = len(real_a)

        # 1. Train D_A and D_B to tell real images of their domain from generated ones,
        #    with both generators held fixed.
        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.pairs(self.noise((n, self.latent_dim)))
            real_scores = {d: self.discriminator(real[d], d) for d in DOMAINS}
            fake_scores = {d: self.discriminator(fake[d], d) for d in DOMAINS}
            loss_d = {d: self.loss.discriminator(real_scores[d], fake_scores[d]) for d in DOMAINS}
            self.optimize(loss_d["a"] + loss_d["b"], opt_d)

        # 2. Train G_A and G_B, drawing each pair from one z, so that D_A and D_B score
        #    their images as real, with both discriminators held fixed.
        with self.toggled_optimizer(opt_g):
            fake = self.pairs(self.noise((n, self.latent_dim)))
            loss_g = {d: self.loss.generator(self.discriminator(fake[d], d)) for d in DOMAINS}
            self.optimize(loss_g["a"] + loss_g["b"], opt_g)
        if self.generator_ema is not None:
            self.update_ema()

        self.remember(loss_d, loss_g, real_scores, fake_scores)

    def pairs(self, z: Tensor) -> dict[str, Tensor]:
        """{"a": G_A(z), "b": G_B(z)}"""
        return dict(zip(DOMAINS, self.generator(z), strict=True))

    def remember(self, loss_d: dict, loss_g: dict, real_scores: dict, fake_scores: dict) -> None:
        """The guard's readings (no sync: it reads them every few steps), and the step's
        statistics on logging steps."""
        stats = {"loss/d": (loss_d["a"] + loss_d["b"]).detach()}
        stats["loss/g"] = (loss_g["a"] + loss_g["b"]).detach()
        self.guard_values = dict(stats)
        self.latest_scores = (
            torch.cat([real_scores["a"], real_scores["b"]]).detach(),
            torch.cat([fake_scores["a"], fake_scores["b"]]).detach(),
        )
        if not self.logging_this_step():
            return
        for d in DOMAINS:
            stats[f"loss/d_{d}"] = loss_d[d].detach()
            stats[f"loss/g_{d}"] = loss_g[d].detach()
            stats[f"d/real_{d}"] = self.loss.readout(real_scores[d].detach())
            stats[f"d/fake_{d}"] = self.loss.readout(fake_scores[d].detach())
        self.log_step_metrics(stats)

    def guard_readings(self) -> GuardReadings:
        """The losses, and where scores are decisions, D's weaker accuracy (on real or on
        generated images, both domains together) at the last step."""
        readings = super().guard_readings()
        threshold = self.loss.decision_threshold
        if self.latest_scores is None or threshold is None:
            return readings
        real, fake = self.latest_scores
        accuracy_real, accuracy_fake = (real > threshold).float(), (fake <= threshold).float()
        saturation = torch.minimum(accuracy_real.mean(), accuracy_fake.mean())
        return readings._replace(saturation=saturation)

    def update_ema(self) -> None:
        """The moving average of G's weights follows G (`update_moving_average`)."""
        update_moving_average(self.generator_ema, self.generator, self.ema_updates, self.ema_decay)

    @torch.no_grad()
    def sample_pairs(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """n pairs (G_A(z), G_B(z)), one z each, in data space on the model's device."""
        net = self.generator if self.generator_ema is None else self.generator_ema
        with evaluating(net):
            a, b = net(self.noise((n, self.latent_dim), generator))
        return a.float(), b.float()

    @torch.no_grad()
    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """n pairs, each side by side: A | B along the width (a 1-channel domain beside a
        3-channel one is repeated over the channels)."""
        self.resolve_labels(n, labels)  # refuses labels: CoGAN is unconditional
        a, b = self.sample_pairs(n, generator)
        channels = max(a.shape[1], b.shape[1])
        return torch.cat([a.expand(-1, channels, -1, -1), b.expand(-1, channels, -1, -1)], dim=3)

    def sample_shape(self) -> tuple[int, ...]:
        a, b = self.pair_shapes()
        return (max(a[0], b[0]), a[1], a[2] + b[2])

    def pair_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of an A image and of a B image."""
        a, b = self.sample_pairs(2)
        return tuple(a.shape[1:]), tuple(b.shape[1:])
