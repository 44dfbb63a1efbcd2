"""StackGAN (Zhang et al. 2017), conditioned on the class instead of a sentence.

Two GANs trained one after the other:

- Stage I: G1(z, c) draws a coarse image at half the data's size; D1 judges it against the
  real images downsampled to that size.
- Stage II: G2(stage-I image, c) draws the full-size image; D2 judges it against the real
  images. G1 is frozen (in eval mode, never updated) while stage II trains.

The condition c comes from conditioning augmentation: the class mapped to a Gaussian
N(mu, sigma^2), c drawn from it, and G pays `kl_weight` x KL(N(mu, sigma^2) || N(0, I))
(averaged over the condition's dimensions, as in the authors' code). Both D's are
matching-aware (GAN-CLS): real images with a wrong class are negatives too.

The stage is a function of the epoch (stage I for the first `stage1_epochs`), so a resumed
run picks up in the right stage; each stage has its own D and its own two optimizers.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import require
from genlab.losses import AdversarialLoss, gaussian_kl
from genlab.models.base import (
    OptimizerFactory,
    SamplingModule,
    attached_trainer,
    evaluating,
    make_optimizer,
    shared_settings,
    spread_labels,
)
from genlab.models.gan_terms import DiscriminatorStep, MismatchedLabels
from genlab.nets.stackgan import StageOutput


def condition_kl(out: StageOutput) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) averaged over the batch and the condition's dimensions;
    0 without conditioning augmentation."""
    if out.mu is None:
        return out.image.new_zeros(())
    return gaussian_kl(out.mu, 2 * out.log_sigma).mean() / out.mu.shape[1]


def downsample(images: Tensor, size: int) -> Tensor:
    """Real images at stage I's size, each pixel the mean of the pixels it covers."""
    return F.interpolate(images, size=(size, size), mode="area")


def upsample(images: Tensor, size: int) -> Tensor:
    """Stage-I images at the data's size (bilinear), to be compared with stage II's."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class StackGAN(SamplingModule):
    """Stage I for `stage1_epochs` epochs, then stage II with stage I fixed."""

    optimizer_names = ("g1", "d1", "g2", "d2")
    loss_charts = {
        "stage I: D and G losses": ["loss/d1", "loss/g1"],
        "stage II: D and G losses": ["loss/d2", "loss/g2"],
        "conditioning augmentation: KL": ["loss/kl1", "loss/kl2"],
    }

    def __init__(
        self,
        generator1: nn.Module,
        discriminator1: nn.Module,
        generator2: nn.Module,
        discriminator2: nn.Module,
        loss: AdversarialLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        image_shape: Sequence[int],
        latent_dim: int,
        num_classes: int,
        cond_dim: int = 16,
        conditioning_augmentation: bool = True,
        kl_weight: float = 1.0,
        mismatched_weight: float = 0.5,
        stage1_epochs: int = 10,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
    ) -> None:
        super().__init__()
        self.lr, self.betas = shared_settings(optimizer_g, optimizer_d, lr, betas)
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        require(kl_weight >= 0, f"model.kl_weight must be >= 0 (got {kl_weight})")
        require(
            stage1_epochs >= 1,
            f"model.stage1_epochs must be >= 1 (got {stage1_epochs}): stage II refines "
            f"stage I's images",
        )
        self.save_hyperparameters(
            ignore=["generator1", "discriminator1", "generator2", "discriminator2", "loss",
                    "optimizer_g", "optimizer_d"],
            logger=False,
        )  # fmt: skip
        self.automatic_optimization = False
        self.generator1, self.discriminator1 = generator1, discriminator1
        self.generator2, self.discriminator2 = generator2, discriminator2
        self.loss = loss
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.cond_dim = cond_dim
        self.kl_weight = kl_weight if conditioning_augmentation else 0.0
        self.mismatched = MismatchedLabels(mismatched_weight)
        require(
            not self.mismatched.active or num_classes >= 2,
            "StackGAN's matching-aware D shows real images with a wrong class, which needs at "
            "least 2 classes; set model.mismatched_weight=0",
        )
        self.stage1_epochs = stage1_epochs
        # the latest stage that has trained (saved with the weights): what `sample` draws
        self.register_buffer("stage_reached", torch.ones((), dtype=torch.long))
        # `sample` draws from this stage when set (1: stage I's output upsampled), else
        # from the latest stage that has trained
        self.sample_stage: int | None = None

    def configure_optimizers(self):
        nets = (self.generator1, self.discriminator1, self.generator2, self.discriminator2)
        factories = (self.optimizer_g, self.optimizer_d) * 2
        return [
            make_optimizer(factory, net.parameters(), self.lr, self.betas)
            for factory, net in zip(factories, nets, strict=True)
        ]

    def setup(self, stage: str) -> None:
        """Before training: refuse a run in which stage I would take every epoch."""
        trainer = attached_trainer(self)
        max_epochs = trainer.max_epochs if trainer is not None else None
        if trainer is None or trainer.fast_dev_run or max_epochs is None or max_epochs < 0:
            return
        require(
            self.stage1_epochs < max_epochs,
            f"model.stage1_epochs={self.stage1_epochs} leaves no epoch of trainer.max_epochs="
            f"{max_epochs} for stage II; set model.stage1_epochs below trainer.max_epochs",
        )

    def stage_of(self, epoch: int) -> int:
        return 1 if epoch < self.stage1_epochs else 2

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, labels = batch
        opt_g1, opt_d1, opt_g2, opt_d2 = self.optimizers()
        if self.stage_of(self.current_epoch) == 1:
            # Stage I at half the size: D1 with G1 held fixed, then G1 with D1 held fixed.
            real = downsample(real, self.image_shape[-1] // 2)
            d_stats = self.discriminator_step(1, real, labels, opt_d1)
            g_stats = self.generator_step(1, labels, opt_g1)
        else:
            # Stage II at full size, on a batch of stage I's images (G1 frozen):
            # D2 with G2 held fixed, then G2 with D2 held fixed.
            self.stage_reached.fill_(2)
            coarse = self.stage_one(self.noise_for(len(labels)), labels).image
            d_stats = self.discriminator_step(2, real, labels, opt_d2, coarse)
            g_stats = self.generator_step(2, labels, opt_g2, coarse)
        stats = d_stats | g_stats
        self.guard_values = {k: v for k, v in stats.items() if k.startswith("loss/")}
        if self.logging_this_step():
            self.log_step_metrics(stats)

    def noise_for(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
        """z, and the eps of each stage's conditioning augmentation."""
        return (
            self.noise((n, self.latent_dim), generator),
            self.noise((n, self.cond_dim), generator),
            self.noise((n, self.cond_dim), generator),
        )

    @torch.no_grad()
    def stage_one(self, noise: tuple[Tensor, ...], labels: Tensor) -> StageOutput:
        """Stage I's images from the frozen G1 (eval mode, no gradients)."""
        z, eps1, _ = noise
        with evaluating(self.generator1):
            return self.generator1(z, labels, eps1)

    def generate(self, stage: int, labels: Tensor, coarse: Tensor | None = None) -> StageOutput:
        """The stage's generator on fresh noise (stage II refines the `coarse` images)."""
        z, eps1, eps2 = self.noise_for(len(labels))
        if stage == 1:
            return self.generator1(z, labels, eps1)
        return self.generator2(coarse, labels, eps2)

    def discriminator_step(
        self, stage: int, real: Tensor, labels: Tensor, opt_d, coarse: Tensor | None = None
    ) -> dict[str, Tensor]:
        """One update of the stage's D (matching-aware), its G held fixed."""
        discriminator = self.discriminator1 if stage == 1 else self.discriminator2
        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.generate(stage, labels, coarse).image
            real_out, fake_out = discriminator(real, labels), discriminator(fake, labels)
            loss = self.loss.discriminator(real_out.score, fake_out.score)
            step = DiscriminatorStep(
                real, fake, labels, real_out, fake_out, discriminator, discriminator,
                self.loss, self.num_classes, logging=False,
            )  # fmt: skip
            if self.mismatched.active:
                extra, _ = self.mismatched.discriminator_loss(step)
                loss = loss + extra
            self.optimize(loss, opt_d)
        return {
            f"loss/d{stage}": loss.detach(),
            f"d{stage}/real": self.loss.readout(real_out.score.detach()),
            f"d{stage}/fake": self.loss.readout(fake_out.score.detach()),
        }

    def generator_step(
        self, stage: int, labels: Tensor, opt_g, coarse: Tensor | None = None
    ) -> dict[str, Tensor]:
        """One update of the stage's G (and its conditioning augmentation), its D held fixed."""
        discriminator = self.discriminator1 if stage == 1 else self.discriminator2
        with self.toggled_optimizer(opt_g):
            out = self.generate(stage, labels, coarse)
            adversarial = self.loss.generator(discriminator(out.image, labels).score)
            kl = condition_kl(out)
            loss = adversarial + self.kl_weight * kl
            self.optimize(loss, opt_g)
        return {f"loss/g{stage}": loss.detach(), f"loss/kl{stage}": kl.detach()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: Tensor | int | None = None,
        generator: torch.Generator | None = None,
        stage: int | None = None,
    ) -> Tensor:
        """n full-size images: stage II's once it has trained, stage I's upsampled before
        (or whichever `stage`, or else `sample_stage`, asks for)."""
        stage = stage or self.sample_stage or int(self.stage_reached)
        require(stage in (1, 2), f"StackGAN has stages 1 and 2 (got stage={stage})")
        labels = self.resolve_labels(n, labels)
        noise = self.noise_for(n, generator)
        coarse = self.stage_one(noise, labels).image
        if stage == 1:
            return upsample(coarse, self.image_shape[-1]).float()
        with evaluating(self.generator2):
            return self.generator2(coarse, labels, noise[2]).image.float()

    @torch.no_grad()
    def figures(
        self, x: Tensor, labels: Tensor, generator: torch.Generator, per_row: int = 8
    ) -> dict[str, tuple[Tensor, Tensor | None, int]]:
        """`stages`: for each class a row of stage I's images (upsampled) above the row of
        stage II's images made from them; nothing before stage II has trained."""
        if int(self.stage_reached) < 2:
            return {}
        classes = spread_labels(self.num_classes, self.num_classes, self.device)
        rows = classes.repeat_interleave(per_row)
        state = generator.get_state()
        first = self.sample(len(rows), rows, generator, stage=1)
        generator.set_state(state)  # the same noise: stage II refines exactly these
        second = self.sample(len(rows), rows, generator, stage=2)
        shape = (self.num_classes, per_row, *first.shape[1:])
        pairs = torch.stack([first.view(shape), second.view(shape)], dim=1).flatten(0, 2)
        return {"stages": (pairs.cpu(), None, per_row)}
