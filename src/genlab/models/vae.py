"""One LightningModule for the autoencoder family: AE, VAE, beta-VAE and CVAE.

VAE (Kingma & Welling 2014): q(z|x) = N(mu(x), diag sigma(x)^2), p(z) = N(0, I), and a
decoder p(x|z). The loss is the negative ELBO,

    -ELBO(x) = E_q[-log p(x|z)] + beta * KL(q(z|x) || p(z)),

each term summed over the pixels (or latent dimensions) of one image and averaged over the
batch, with z = mu + sigma * eps (the reparameterization trick). `beta = 1` is the VAE,
`beta > 1` the beta-VAE; the CVAE gives the label to the encoder and the decoder;
`variational=false` is the deterministic autoencoder (z = mu, no KL).

Held-out evaluation adds the importance-weighted bound (Burda et al. 2016)
log p(x) >= E[log 1/k sum_i p(x, z_i) / q(z_i|x)], which tightens as k grows.
"""

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.distributions import Normal
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from genlab.errors import check_num_classes, require
from genlab.losses import gaussian_kl
from genlab.models.base import check_lr, check_optimizer, evaluating
from genlab.models.likelihood import LikelihoodModel, bernoulli_nll, bits_per_dim, per_image

LIKELIHOODS = ("bernoulli", "bce", "gaussian")


class VAE(LikelihoodModel):
    loss_charts = {"ELBO terms": ["loss/rec", "loss/kl", "loss/total"]}

    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        decoder: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], Optimizer],
        latent_dim: int = 20,
        num_classes: int = 0,
        variational: bool = True,
        beta: float = 1.0,
        likelihood: str = "bernoulli",
        lr: float = 1e-3,
        iwae_k: int = 100,
        lr_scheduler: Callable[[Optimizer], LRScheduler] | None = None,
        net: str = "mlp",
    ) -> None:
        super().__init__()
        self.lr = check_lr("lr", lr)
        check_optimizer(optimizer, "model.optimizer", lr="model.lr")
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        require(beta >= 0, f"model.beta must be >= 0 (got {beta})")
        require(iwae_k >= 1, f"model.iwae_k must be >= 1 (got {iwae_k})")
        require(
            likelihood in LIKELIHOODS,
            f"model.likelihood must be one of {', '.join(LIKELIHOODS)} (got {likelihood!r})",
        )
        check_num_classes(num_classes)
        self.save_hyperparameters(
            ignore=["encoder", "decoder", "optimizer", "lr_scheduler"], logger=False
        )
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.variational = variational
        self.beta = beta
        self.likelihood = likelihood
        self.iwae_k = iwae_k
        self.encoder = encoder(out_features=2 * latent_dim if variational else latent_dim)
        self.decoder = decoder
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        # Gaussian decoder: one learned scale for every pixel
        self.log_scale = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" else None
        # The AE has no prior; it samples from a Gaussian fitted to its training codes.
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_std", torch.ones(latent_dim))

    # --- the model -------------------------------------------------------------------------

    def encode(self, x: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """mu and log sigma^2 of q(z|x) (logvar None for the AE)."""
        h = self.encoder(self.encoder_input(x), labels)
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def encoder_input(self, x: Tensor) -> Tensor:
        """The images as the likelihood reads them: pixels in [0, 1] (binary: {0, 1}) for the
        Bernoulli and BCE decoders, [-1, 1] for the Gaussian one. In {-1, 1} every background
        pixel feeds the first layer too, and an MLP VAE on binarized mnist_mini ends 1.4 nats
        lower in held-out log-likelihood (bench/vae_yardstick.py)."""
        return x if self.likelihood == "gaussian" else (x + 1) / 2

    def decode_nll(self, out: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) per image, in nats, from the decoder's output (which may carry leading
        sample dimensions: k x N x ... against N images)."""
        if self.likelihood == "gaussian":
            return -per_image(Normal(out, self.log_scale.exp()).log_prob(x), x)
        return bernoulli_nll(out, x)

    def mean_image(self, out: Tensor) -> Tensor:
        """The decoder's mean in data space [-1, 1]."""
        if self.likelihood == "gaussian":
            return out.clamp(-1, 1)
        return torch.sigmoid(out) * 2 - 1

    def terms(self, x: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """Per-image reconstruction and KL terms on one batch, with one sample z ~ q(z|x)."""
        mu, logvar = self.encode(x, labels)
        if logvar is None:
            z, kl = mu, torch.zeros(len(x), device=x.device)
        else:
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            kl = gaussian_kl(mu, logvar)
        rec = self.decode_nll(self.decoder(z, labels), x)
        return {"rec": rec, "kl": kl, "z": mu}

    def step_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, labels = batch
        labels = labels if self.conditional else None
        if self.likelihood == "bernoulli":
            self.check_binary_once(x, "or use model.likelihood=bce for grey levels")
        terms = self.terms(x, labels)
        rec, kl = terms["rec"].mean(), terms["kl"].mean()
        loss = rec + self.beta * kl
        self.guard_values = {"loss/total": loss.detach()}
        if not self.variational:
            self.track_codes(terms["z"].detach())
        if self.logging_this_step():
            stats = {"loss/rec": rec.detach(), "loss/total": loss.detach()}
            if self.variational:
                elbo = -(rec + kl).detach()
                stats |= {
                    "loss/kl": kl.detach(),
                    "train/elbo": elbo,
                    "train/bpd": bits_per_dim(-elbo, x[0].numel()),
                }
            self.log_step_metrics(stats)
        return loss

    @torch.no_grad()
    def track_codes(self, z: Tensor, momentum: float = 0.05) -> None:
        self.code_mean.lerp_(z.mean(0), momentum)
        self.code_std.lerp_(z.std(0) if len(z) > 1 else self.code_std, momentum)

    @torch.no_grad()
    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        labels = self.resolve_labels(n, labels)
        z = self.noise((n, self.latent_dim), generator)
        if not self.variational:
            z = self.code_mean + self.code_std * z
        with evaluating(self):
            return self.mean_image(self.decoder(z, labels)).float()

    # --- held-out evaluation ---------------------------------------------------------------

    @torch.no_grad()
    def log_px_bounds(
        self, x: Tensor, labels: Tensor | None, ks: Iterable[int], generator: torch.Generator
    ) -> dict[int, Tensor]:
        """The IWAE bound on log p(x) per image for each k (k = 1 is the ELBO), all from the
        same draws: the bound for k uses the first k of them."""
        ks = sorted(set(ks))
        mu, logvar = self.encode(x, labels)
        std = (0.5 * logvar).exp()
        k_max = ks[-1]
        eps = torch.randn((k_max, *mu.shape), generator=generator).to(mu.device)
        z = mu + std * eps  # k x N x L
        flat_labels = None if labels is None else labels.repeat(k_max)
        out = self.decoder(z.flatten(0, 1), flat_labels)
        log_px_z = -self.decode_nll(out.reshape(k_max, *x.shape), x)  # k x N
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = Normal(mu, std).log_prob(z).sum(-1)
        log_w = log_px_z + log_pz - log_qz
        return {k: torch.logsumexp(log_w[:k], dim=0) - math.log(k) for k in ks}

    @torch.no_grad()
    def held_out_metrics(self, x: Tensor, labels: Tensor | None, seed: int = 0) -> dict[str, float]:
        """On the held-out set: reconstruction error, and for the VAE the ELBO, its two
        terms, the IWAE bound for k = 1, 10, ..., iwae_k and the bits per dimension (from
        the IWAE bound), all per image in nats. The numbers use a fixed seed."""
        labels = labels if self.conditional else None
        generator = torch.Generator().manual_seed(seed)
        batch_size = max(1, 10_000 // self.iwae_k)  # k x batch decodes at a time
        x = x.to(self.device)
        labels = None if labels is None else labels.to(self.device)
        sums: dict[str, float] = {}
        with evaluating(self):
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size]
                lb = None if labels is None else labels[start : start + batch_size]
                mu, logvar = self.encode(xb, lb)
                batch = {"rec": self.decode_nll(self.decoder(mu, lb), xb)}  # at the mean code
                if self.variational:
                    batch["kl"] = gaussian_kl(mu, logvar)
                    ks = [k for k in (1, 10, 100, 1000) if k < self.iwae_k] + [self.iwae_k]
                    for k, bound in self.log_px_bounds(xb, lb, ks, generator).items():
                        batch[f"iwae_k{k}"] = bound
                for name, values in batch.items():
                    sums[name] = sums.get(name, 0.0) + float(values.double().sum())
        metrics = {name: total / len(x) for name, total in sums.items()}
        if self.variational:
            metrics["elbo"] = metrics["iwae_k1"]
            metrics["iwae"] = metrics[f"iwae_k{self.iwae_k}"]
            metrics["nll"] = -metrics["iwae"]
            metrics["bpd"] = bits_per_dim(metrics["nll"], x[0].numel())
        return metrics

    # --- pictures ---------------------------------------------------------------------------

    @torch.no_grad()
    def figures(
        self, x: Tensor, labels: Tensor, generator: torch.Generator, per_row: int = 8
    ) -> dict[str, tuple[Tensor, Tensor | None, int]]:
        """Pictures beyond the sample grid, as (samples, labels, images per row):
        originals above their reconstructions, latent interpolations between held-out
        digits, and for a 2-D latent the decoded manifold and the held-out codes."""
        order = torch.randperm(len(x), generator=generator)
        x, labels = x[order].to(self.device), labels[order].to(self.device)
        cond = labels if self.conditional else None
        originals = x[: per_row * 4]
        with evaluating(self):
            mu, _ = self.encode(originals, None if cond is None else cond[: len(originals)])
            recon = self.mean_image(
                self.decoder(mu, None if cond is None else cond[: len(originals)])
            )
            # rows: originals, their reconstructions, originals, ...
            pairs = torch.stack(
                [originals.view(4, per_row, *x.shape[1:]), recon.view(4, per_row, *x.shape[1:])],
                dim=1,
            ).flatten(0, 2)
            figures = {"reconstructions": (pairs, None, per_row)}
            steps = torch.linspace(0, 1, per_row + 2, device=self.device)
            a, b = mu[:4], mu[4:8]
            z = (a[:, None] + steps[None, :, None] * (b - a)[:, None]).flatten(0, 1)
            lab = None if cond is None else cond[:4].repeat_interleave(len(steps))
            figures["interpolation"] = (self.mean_image(self.decoder(z, lab)), None, len(steps))
            if self.latent_dim == 2 and not self.conditional:
                quantiles = torch.linspace(0.05, 0.95, 15)
                grid = Normal(0.0, 1.0).icdf(quantiles).to(self.device)
                if not self.variational:
                    grid = grid[:, None] * self.code_std + self.code_mean
                    zz = torch.stack(torch.meshgrid(grid[:, 0], grid[:, 1], indexing="xy"), -1)
                else:
                    zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1)
                zz = zz.flip(0).reshape(-1, 2)  # z_2 grows upwards
                figures["manifold"] = (self.mean_image(self.decoder(zz, None)), None, 15)
                codes, _ = self.encode(x[:2000], None)
                figures["latents"] = (codes, labels[:2000], 0)
        return figures
