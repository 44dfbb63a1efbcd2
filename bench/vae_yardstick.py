"""The yardstick for `experiment=vae_mnist_mini`: the seed's VAE as a plain PyTorch loop.

MLPs 784-400-20 with ReLU, a Bernoulli decoder (BCE on logits) and the analytic KL, summed
per image and averaged over the batch; Adam at 1e-3, batches of 100, 30 epochs, on the
recipe's binarized mnist_mini split (genlab's data module with the same seed). Held-out:
the ELBO and the IWAE bound (k = 100) from the same draws and the same seed as genlab's
`VAE.held_out_metrics` (on the same weights the two agree to 1e-4 nats). Seeds 0, 1, 2 on a
2-core CPU: ELBO -103.6, IWAE -97.2 nats, 7 s of data, training and evaluation.

    python bench/vae_yardstick.py             # the recipe's seed (42): ELBO, IWAE, wall time
    python bench/vae_yardstick.py --seed 0
    python bench/vae_yardstick.py --quick     # 1 epoch, 200 held-out images, k = 10: a check
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.images import MnistMiniDataModule


class PlainVAE(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 400, latent: int = 20) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = (
            nn.Linear(pixels, hidden),
            nn.Linear(hidden, latent),
            nn.Linear(hidden, latent),
        )
        self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, pixels)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def decode(self, z: Tensor) -> Tensor:  # Bernoulli logits
        return self.fc4(F.relu(self.fc3(z)))


def negative_elbo(model: PlainVAE, x: Tensor) -> Tensor:
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    rec = F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return (rec + kl).mean()


@torch.no_grad()
def bounds(model: PlainVAE, x: Tensor, k: int, seed: int = 4321) -> tuple[float, float]:
    """Mean held-out ELBO and IWAE(k) per image, in nats (the ELBO is the first draw's)."""
    generator, elbo, iwae = torch.Generator().manual_seed(seed), 0.0, 0.0
    for xb in x.split(max(1, 10_000 // k)):
        mu, logvar = model.encode(xb)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn((k, *mu.shape), generator=generator)
        log_px_z = -F.binary_cross_entropy_with_logits(
            model.decode(z), xb.expand(k, *xb.shape), reduction="none"
        ).sum(-1)
        normal = torch.distributions.Normal
        log_w = (
            log_px_z + normal(0.0, 1.0).log_prob(z).sum(-1) - normal(mu, std).log_prob(z).sum(-1)
        )
        elbo += float(log_w[0].sum())
        iwae += float((torch.logsumexp(log_w, 0) - math.log(k)).sum())
    return elbo / len(x), iwae / len(x)


def binary_split(seed: int) -> tuple[Tensor, Tensor]:
    """The recipe's train and held-out images, flattened, as {0, 1} pixels."""
    data = MnistMiniDataModule(binarize=True, batch_size=100, seed=seed)
    train, held_out = data.real_set("train")[0], data.eval_set()[0]
    return ((train.flatten(1) + 1) / 2), ((held_out.flatten(1) + 1) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=42, help="the split's and the run's")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 epoch, 200 images, k = 10")
    args = parser.parse_args()
    started = time.perf_counter()
    train, held_out = binary_split(args.seed)
    epochs, k = (1, 10) if args.quick else (args.epochs, args.k)
    held_out = held_out[:200] if args.quick else held_out
    torch.manual_seed(args.seed)
    model = PlainVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(train)).split(args.batch_size):
            if len(idx) < args.batch_size:
                continue  # drop the last partial batch, as the recipe does
            loss = negative_elbo(model, train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trained = time.perf_counter()
    elbo, iwae = bounds(model, held_out, k)
    print(f"held-out images {len(held_out)}, epochs {epochs}, seed {args.seed}")
    print(f"ELBO {elbo:.2f} nats, IWAE(k={k}) {iwae:.2f} nats")
    print(f"wall {time.perf_counter() - started:.1f} s (training {trained - started:.1f} s)")


if __name__ == "__main__":
    main()
