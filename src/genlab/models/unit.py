"""UNIT (Liu, Breuel & Kautz 2017): unpaired translation through one shared latent space.

Two VAEs, one per domain, whose encoders share their last layers and whose decoders share
their first (the weight sharing of CoGAN), so that a code means the same in both domains:
an A image is translated by encoding it with A's encoder and decoding the code with B's
decoder. Two image discriminators judge the translations (the LSGAN loss), and three terms
more bind the latent space:

- the VAE terms: each autoencoder reconstructs its own images (L1) from a code drawn as
  N(mean, I), and a KL term pulls the means towards 0;
- the cycle through the code (UNIT's cycle, ComboGAN's cycle): A encoder, B decoder,
  B encoder, A decoder gives the A image back (L1, with the KL term of the second code);
- a latent domain discriminator that tries to tell A's codes from B's; the encoders learn
  to fool it (Lample et al.'s fader networks, XGAN), so that both domains fill the same
  region of the latent space.

Each is switched off by a weight of 0 (`model.share_layers=0` for the sharing), which is
how the ablations run. Training alternates as every GAN in genlab: the three
discriminators with the autoencoders held fixed, then the autoencoders with the
discriminators held fixed.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import require
from genlab.losses import AdversarialLoss
from genlab.models.base import OptimizerFactory
from genlab.models.translation import ImageTranslation, round_trips
from genlab.nets.unit import CoupledAutoencoders, LatentDiscriminator


def kl_to_standard_normal(mean: Tensor) -> Tensor:
    """KL(N(mean, I) || N(0, I)) = |mean|^2 / 2, averaged over the code's elements."""
    return 0.5 * mean.pow(2).mean()


def check_nets(
    share_layers: int, autoencoders: CoupledAutoencoders, latent_discriminator: LatentDiscriminator
) -> None:
    """The nets as the model's settings say: sharing as set, codes the discriminator takes."""
    require(
        share_layers == autoencoders.share_layers,
        f"model.share_layers={share_layers} but the autoencoders share "
        f"{autoencoders.share_layers}; leave model.autoencoders.share_layers at "
        "${model.share_layers}",
    )
    require(
        latent_discriminator.channels == autoencoders.code_channels,
        f"the latent discriminator takes codes of {latent_discriminator.channels} channels "
        f"but the encoders make {autoencoders.code_channels}; leave "
        "model.latent_discriminator's code_width and n_down at the autoencoders'",
    )


class UNIT(ImageTranslation):
    """Unpaired translation both ways through coupled VAEs sharing a latent space."""

    directions = ("ab", "ba")
    loss_charts = {
        "D and G losses": ["loss/d", "loss/g_adv"],
        "G's terms": ["loss/g_adv", "loss/reconstruction", "loss/cycle", "loss/kl"],
        "latent domain discriminator": ["loss/d_latent", "loss/latent"],
    }

    def __init__(
        self,
        autoencoders: CoupledAutoencoders,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        latent_discriminator: LatentDiscriminator,
        loss: AdversarialLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        share_layers: int = 1,
        reconstruction_weight: float = 10.0,
        kl_weight: float = 0.01,
        cycle_weight: float = 10.0,
        cycle_kl_weight: float = 0.01,
        latent_adversarial_weight: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(in_shape, out_shape, optimizer_g, optimizer_d, loss, **kwargs)
        weights = {
            "reconstruction_weight": reconstruction_weight,
            "kl_weight": kl_weight,
            "cycle_weight": cycle_weight,
            "cycle_kl_weight": cycle_kl_weight,
            "latent_adversarial_weight": latent_adversarial_weight,
        }
        for name, weight in weights.items():
            require(weight >= 0, f"model.{name} must be >= 0 (got {weight})")
        check_nets(share_layers, autoencoders, latent_discriminator)
        self.save_hyperparameters(
            ignore=["autoencoders", "discriminator_a", "discriminator_b",
                    "latent_discriminator", "loss", "optimizer_g", "optimizer_d"],
            logger=False,
        )  # fmt: skip
        self.autoencoders = autoencoders
        self.discriminator_a = discriminator_a
        self.discriminator_b = discriminator_b
        self.latent_discriminator = latent_discriminator
        self.share_layers = share_layers
        self.reconstruction_weight = reconstruction_weight
        self.kl_weight = kl_weight
        self.cycle_weight = cycle_weight
        self.cycle_kl_weight = cycle_kl_weight
        self.latent_adversarial_weight = latent_adversarial_weight

    def generator_for(self, direction: str) -> nn.Module:
        return self.autoencoders.translator(direction)

    def generators(self) -> list[nn.Module]:
        return [self.autoencoders]  # the shared blocks once, not once per direction

    def discriminators(self) -> list[nn.Module]:
        return [self.discriminator_a, self.discriminator_b, self.latent_discriminator]

    def forward(self, a: Tensor) -> Tensor:
        return self.autoencoders.translator("ab")(a)

    def draw(self, mean: Tensor) -> Tensor:
        """A code from N(mean, I), by reparameterisation."""
        return mean + torch.randn_like(mean)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        a, b, _, _ = batch
        opt_g, opt_d = self.optimizers()
        nets = self.autoencoders
        mean_a, mean_b = nets.encode(a, "a"), nets.encode(b, "b")
        code_a, code_b = self.draw(mean_a), self.draw(mean_b)
        fake_b, fake_a = nets.decode(code_a, "b"), nets.decode(code_b, "a")  # both steps use them

        # 1. Train D_A, D_B (real images against translations) and the latent domain
        #    discriminator (A's codes against B's), with the autoencoders held fixed.
        with self.toggled_optimizer(opt_d):
            loss_d_a = self.loss.discriminator(
                self.discriminator_a(a), self.discriminator_a(fake_a.detach())
            )
            loss_d_b = self.loss.discriminator(
                self.discriminator_b(b), self.discriminator_b(fake_b.detach())
            )
            loss_d = loss_d_a + loss_d_b
            stats = {"loss/d_a": loss_d_a.detach(), "loss/d_b": loss_d_b.detach()}
            if self.latent_adversarial_weight > 0:
                loss_d_latent = self.latent_loss(mean_a.detach(), mean_b.detach())
                loss_d = loss_d + self.latent_adversarial_weight * loss_d_latent
                stats["loss/d_latent"] = loss_d_latent.detach()
            self.optimize(loss_d, opt_d)

        # 2. Train the autoencoders, with the discriminators held fixed: translations that
        #    fool D_A and D_B, reconstructions, the cycle through the code, one latent space.
        with self.toggled_optimizer(opt_g):
            adversarial = self.loss.generator(self.discriminator_b(fake_b))
            adversarial = adversarial + self.loss.generator(self.discriminator_a(fake_a))
            terms = self.vae_terms(a, b, code_a, code_b, mean_a, mean_b)
            terms |= self.cycle_terms(a, b, fake_a, fake_b)
            if self.latent_adversarial_weight > 0:
                # the encoders' side of the latent game: the labels swapped
                terms["latent"] = (self.latent_adversarial_weight,
                                   self.latent_loss(mean_b, mean_a))  # fmt: skip
            loss_g = self.adv_weight * adversarial
            for weight, value in terms.values():
                loss_g = loss_g + weight * value
            self.optimize(loss_g, opt_g)

        stats |= {f"loss/{name}": value.detach() for name, (_, value) in terms.items()}
        self.remember(
            stats
            | {"loss/d": loss_d.detach(), "loss/g": loss_g.detach(),
               "loss/g_adv": adversarial.detach()}
        )  # fmt: skip

    def latent_loss(self, positive: Tensor, negative: Tensor) -> Tensor:
        """The latent discriminator's loss calling `positive` codes A's and `negative` B's."""
        critic = self.latent_discriminator
        return self.loss.discriminator(critic(positive), critic(negative))

    def vae_terms(
        self, a: Tensor, b: Tensor, code_a: Tensor, code_b: Tensor, mean_a: Tensor, mean_b: Tensor
    ) -> dict[str, tuple[float, Tensor]]:
        """Each autoencoder reconstructs its own domain; the codes' KL to N(0, I)."""
        nets = self.autoencoders
        reconstruction = F.l1_loss(nets.decode(code_a, "a"), a)
        reconstruction = reconstruction + F.l1_loss(nets.decode(code_b, "b"), b)
        kl = kl_to_standard_normal(mean_a) + kl_to_standard_normal(mean_b)
        return {
            "reconstruction": (self.reconstruction_weight, reconstruction),
            "kl": (self.kl_weight, kl),
        }

    def cycle_terms(
        self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor
    ) -> dict[str, tuple[float, Tensor]]:
        """A -> code -> B -> code -> A gives A back (and B -> A -> B gives B back)."""
        if self.cycle_weight == 0 and self.cycle_kl_weight == 0:
            return {}
        nets = self.autoencoders
        mean_ab, mean_ba = nets.encode(fake_b, "b"), nets.encode(fake_a, "a")
        cycle = F.l1_loss(nets.decode(self.draw(mean_ab), "a"), a)
        cycle = cycle + F.l1_loss(nets.decode(self.draw(mean_ba), "b"), b)
        kl = kl_to_standard_normal(mean_ab) + kl_to_standard_normal(mean_ba)
        return {"cycle": (self.cycle_weight, cycle), "cycle_kl": (self.cycle_kl_weight, kl)}

    def columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        return round_trips(self, a, b)
