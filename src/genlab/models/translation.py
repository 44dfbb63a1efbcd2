"""Image-to-image translation: pix2pix (paired) and CycleGAN (unpaired).

Both are GANs under manual optimization, and their `training_step` keeps the alternation
plain: train D with G held fixed, then train G with D held fixed. What changes is what D
sees and what G must also satisfy:

- pix2pix (Isola et al. 2017): D judges (input, output) pairs patch by patch; G must also
  stay close to the target in L1 (weight 100).
- CycleGAN (Zhu et al. 2017): two generators A->B and B->A, two discriminators, the LSGAN
  loss, a cycle loss (A->B->A gives A back, weight 10), an identity loss (a B image passed to
  A->B stays itself, weight 0.5 x 10), and D trained against a pool of 50 past fakes.

The learning rate stays constant for the first half of training and then decays linearly
to zero (both papers), stepped by hand once per epoch.
"""

import itertools
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from genlab.errors import require
from genlab.losses import AdversarialLoss
from genlab.models.base import (
    GenerativeModule,
    OptimizerFactory,
    attached_trainer,
    evaluating,
    make_optimizer,
    shared_settings,
)


class ImagePool:
    """A history of generated images (Shrivastava et al. 2017), CycleGAN's D sees it.

    Until `size` images are stored, every query stores and returns its images. Once full,
    each image is, with probability 1/2, swapped for a random stored one (which is returned
    in its place), and otherwise returned as is. `size=0` turns the pool off.
    """

    def __init__(self, size: int = 50) -> None:
        require(size >= 0, f"model.pool_size must be >= 0 (got {size})")
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        out = images.clone()
        for i, image in enumerate(images):
            if len(self.images) < self.size:
                self.images.append(image.clone())
            # Python's generator (seeded by the run's seed and saved in checkpoints): a
            # tensor coin would be read back into Python for every image
            elif random.random() < 0.5:
                slot = random.randrange(self.size)
                out[i] = self.images[slot]
                self.images[slot] = image.clone()
        return out

    def state_dict(self) -> dict:
        return {"images": [image.cpu() for image in self.images]}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.images = [image.to(device) for image in state["images"]]


def spread(length: int, n: int) -> Tensor:
    """n indices evenly spread over range(length)."""
    return torch.linspace(0, length - 1, n).round().long()


def round_trips(model: "ImageTranslation", a: Tensor, b: Tensor) -> list[Tensor]:
    """A two-way model's grid columns: a | A->B | back to A || b | B->A | back to B"""
    a_to_b = model.translate(a, "ab")
    b_to_a = model.translate(b, "ba")
    return [a, a_to_b, model.translate(a_to_b, "ba"), b, b_to_a, model.translate(b_to_a, "ab")]


class ImageTranslation(GenerativeModule):
    """What pix2pix and CycleGAN share: `translate`, the decay schedule, the pictures."""

    optimizer_names = ("g", "d")
    directions: tuple[str, ...] = ("ab",)

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        loss: AdversarialLoss,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        adv_weight: float = 1.0,
        lr_decay: bool = True,
        decay_start_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.lr, self.betas = shared_settings(optimizer_g, optimizer_d, lr, betas)
        require(adv_weight > 0, f"model.adv_weight must be > 0 (got {adv_weight})")
        require(
            decay_start_epoch is None or decay_start_epoch >= 0,
            f"model.decay_start_epoch must be >= 0 or null (got {decay_start_epoch})",
        )
        self.automatic_optimization = False
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.loss = loss
        self.adv_weight = adv_weight
        self.lr_decay = lr_decay
        self.decay_start_epoch = decay_start_epoch

    def generator_for(self, direction: str) -> nn.Module:
        raise NotImplementedError

    def generators(self) -> list[nn.Module]:
        return [self.generator_for(direction) for direction in self.directions]

    def discriminators(self) -> list[nn.Module]:
        raise NotImplementedError

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """Translate images (A->B with 'ab', B->A with 'ba'), in eval mode, on the model's device."""
        require(direction in self.directions, f"this model translates {self.directions} only")
        generator = self.generator_for(direction)
        with evaluating(generator):
            return generator(x.to(self.device)).float()

    def configure_optimizers(self):
        generators = itertools.chain(*(g.parameters() for g in self.generators()))
        discriminators = itertools.chain(*(d.parameters() for d in self.discriminators()))
        optimizers = [
            make_optimizer(self.optimizer_g, generators, self.lr, self.betas),
            make_optimizer(self.optimizer_d, discriminators, self.lr, self.betas),
        ]
        if not self.lr_decay:
            return optimizers
        return optimizers, [LambdaLR(optimizer, self.decay_factor) for optimizer in optimizers]

    def decay_factor(self, epoch: int) -> float:
        """1 until `decay_start_epoch` (default: half of max_epochs), then linearly down to
        0 at max_epochs."""
        trainer = attached_trainer(self)
        max_epochs = trainer.max_epochs if trainer is not None else None
        if not max_epochs or max_epochs < 0:
            return 1.0
        start = max_epochs // 2 if self.decay_start_epoch is None else self.decay_start_epoch
        if epoch < start or start >= max_epochs:
            return 1.0
        return 1.0 - (epoch - start) / (max_epochs - start)

    def remember(self, stats: dict[str, Tensor]) -> None:
        """Hand the losses to the divergence guard, and log them on logging steps."""
        self.guard_values = {"loss/d": stats["loss/d"], "loss/g": stats["loss/g"]}
        if self.logging_this_step():
            self.log_step_metrics(stats)

    def figures(
        self,
        a: Tensor,
        b: Tensor,
        labels_a: Tensor,
        labels_b: Tensor,
        generator: torch.Generator | None = None,
        per_row: int = 8,
    ) -> dict[str, tuple[Tensor, None, int]]:
        """One grid: `per_row` held-out examples, one a row, in the columns of `columns()`."""
        n = min(per_row, len(a), len(b))
        # spread over the held-out set, which may be sorted by class
        columns = self.columns(a[spread(len(a), n)], b[spread(len(b), n)])
        channels = max(column.shape[1] for column in columns)
        columns = [column.cpu().expand(-1, channels, -1, -1) for column in columns]
        return {"grid": (torch.stack(columns, dim=1).flatten(0, 1), None, len(columns))}

    def columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        raise NotImplementedError


class Pix2Pix(ImageTranslation):
    """Paired translation A -> B: a U-Net G and a PatchGAN D on (input, output) pairs."""

    directions = ("ab",)
    loss_charts = {
        "D and G losses": ["loss/d", "loss/g_adv"],
        "G's terms": ["loss/g_adv", "loss/l1"],
    }

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: AdversarialLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        l1_weight: float = 100.0,
        **kwargs,
    ) -> None:
        super().__init__(in_shape, out_shape, optimizer_g, optimizer_d, loss, **kwargs)
        require(l1_weight >= 0, f"model.l1_weight must be >= 0 (got {l1_weight})")
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "loss", "optimizer_g", "optimizer_d"],
            logger=False,
        )
        self.generator = generator
        self.discriminator = discriminator
        self.l1_weight = l1_weight

    def generator_for(self, direction: str) -> nn.Module:
        return self.generator

    def discriminators(self) -> list[nn.Module]:
        return [self.discriminator]

    def forward(self, a: Tensor) -> Tensor:
        return self.generator(a)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        a, b, _, _ = batch
        opt_g, opt_d = self.optimizers()
        fake = self.generator(a)  # one forward pass serves both steps

        # 1. Train D to tell real pairs (a, b) from generated pairs (a, G(a)), with G held fixed.
        with self.toggled_optimizer(opt_d):
            real_scores = self.discriminator(torch.cat([a, b], dim=1))
            fake_scores = self.discriminator(torch.cat([a, fake.detach()], dim=1))
            # halved, as in the paper, so that D learns more slowly than G
            loss_d = 0.5 * self.loss.discriminator(real_scores, fake_scores)
            self.optimize(loss_d, opt_d)

        # 2. Train G to fool D and to match the target in L1, with D held fixed.
        with self.toggled_optimizer(opt_g):
            adversarial = self.loss.generator(self.discriminator(torch.cat([a, fake], dim=1)))
            l1 = F.l1_loss(fake, b)
            loss_g = self.adv_weight * adversarial + self.l1_weight * l1
            self.optimize(loss_g, opt_g)

        self.remember(
            {
                "loss/d": loss_d.detach(),
                "loss/g": loss_g.detach(),
                "loss/g_adv": adversarial.detach(),
                "loss/l1": l1.detach(),
                "d/real": self.loss.readout(real_scores.detach()),
                "d/fake": self.loss.readout(fake_scores.detach()),
            }
        )

    def columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """input | translated | target"""
        return [a, self.translate(a, "ab"), b]


class CycleGAN(ImageTranslation):
    """Unpaired translation both ways: generators A->B and B->A, discriminators on A and B."""

    directions = ("ab", "ba")
    loss_charts = {
        "D and G losses": ["loss/d", "loss/g_adv"],
        "G's terms": ["loss/g_adv", "loss/cycle", "loss/identity"],
    }

    def __init__(
        self,
        generator_ab: nn.Module,
        generator_ba: nn.Module,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        loss: AdversarialLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        **kwargs,
    ) -> None:
        super().__init__(in_shape, out_shape, optimizer_g, optimizer_d, loss, **kwargs)
        require(cycle_weight >= 0, f"model.cycle_weight must be >= 0 (got {cycle_weight})")
        require(
            identity_weight == 0 or self.in_shape == self.out_shape,
            f"the identity loss needs domains of one shape (A {list(self.in_shape)}, "
            f"B {list(self.out_shape)}); set model.identity_weight=0",
        )
        self.save_hyperparameters(
            ignore=[
                "generator_ab",
                "generator_ba",
                "discriminator_a",
                "discriminator_b",
                "loss",
                "optimizer_g",
                "optimizer_d",
            ],
            logger=False,
        )
        self.generator_ab = generator_ab
        self.generator_ba = generator_ba
        self.discriminator_a = discriminator_a
        self.discriminator_b = discriminator_b
        self.cycle_weight = cycle_weight
        self.identity_weight = identity_weight
        self.pool_a = ImagePool(pool_size)  # generated A images, for D_A
        self.pool_b = ImagePool(pool_size)

    def generator_for(self, direction: str) -> nn.Module:
        return self.generator_ab if direction == "ab" else self.generator_ba

    def discriminators(self) -> list[nn.Module]:
        return [self.discriminator_a, self.discriminator_b]

    def forward(self, a: Tensor) -> Tensor:
        return self.generator_ab(a)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        a, b, _, _ = batch
        opt_g, opt_d = self.optimizers()
        fake_b = self.generator_ab(a)  # one forward pass each serves both steps
        fake_a = self.generator_ba(b)

        # 1. Train D_A and D_B to tell real images from a history of generated ones,
        #    with both generators held fixed.
        with self.toggled_optimizer(opt_d):
            loss_d_a = self.loss.discriminator(
                self.discriminator_a(a), self.discriminator_a(self.pool_a.query(fake_a))
            )
            loss_d_b = self.loss.discriminator(
                self.discriminator_b(b), self.discriminator_b(self.pool_b.query(fake_b))
            )
            loss_d = loss_d_a + loss_d_b
            self.optimize(loss_d, opt_d)

        # 2. Train both generators, with D_A and D_B held fixed: fool the discriminators,
        #    undo each other (cycle), and leave images of their target domain alone (identity).
        with self.toggled_optimizer(opt_g):
            adversarial = self.loss.generator(self.discriminator_b(fake_b))
            adversarial = adversarial + self.loss.generator(self.discriminator_a(fake_a))
            cycle = self.cycle_loss(a, b, fake_a, fake_b)
            loss_g = self.adv_weight * adversarial + self.cycle_weight * cycle
            stats = {"loss/cycle": cycle.detach()}
            if self.identity_weight > 0:
                identity = F.l1_loss(self.generator_ab(b), b) + F.l1_loss(self.generator_ba(a), a)
                loss_g = loss_g + self.identity_weight * self.cycle_weight * identity
                stats["loss/identity"] = identity.detach()
            self.optimize(loss_g, opt_g)

        self.remember(
            stats
            | {
                "loss/d": loss_d.detach(),
                "loss/d_a": loss_d_a.detach(),
                "loss/d_b": loss_d_b.detach(),
                "loss/g": loss_g.detach(),
                "loss/g_adv": adversarial.detach(),
            }
        )

    def cycle_loss(self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor) -> Tensor:
        """|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1, given fake_b = G_AB(a), fake_a = G_BA(b)."""
        return F.l1_loss(self.generator_ba(fake_b), a) + F.l1_loss(self.generator_ab(fake_a), b)

    def columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        return round_trips(self, a, b)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["image_pools"] = {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        pools = checkpoint.get("image_pools")
        if pools:
            self.pool_a.load_state_dict(pools["a"], self.device)
            self.pool_b.load_state_dict(pools["b"], self.device)
