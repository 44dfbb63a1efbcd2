"""Lightning's own cost per batch: the floor under any genlab workload's step time.

A Trainer around a training step that does nothing but `updates` optimizer steps on one
scalar weight (genlab's `optimize`: zero_grad, backward, step; as in a genlab run, it skips
Lightning's hooks around each update when nothing listens to them), with nothing else on
(no logger, no progress bar, no callbacks but a clock, no checkpoints), against a for loop
doing the same updates over the same in-memory batches. The difference is what Lightning's
loop costs per batch before a model computes anything: its fetcher, hooks and bookkeeping,
and its step accounting around each update. A workload whose plain step
takes T ms can reach at most T / (T + floor) of the plain loop's rate inside Lightning.

    python bench/floor.py                  # -> bench/results.md, section floor-cpu
    python bench/floor.py --device cuda    # the same on a GPU (section floor-cuda)
    python bench/floor.py --quick --out /tmp/floor.md
    python bench/floor.py --parts          # also: what each of genlab's default pieces adds
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger

from genlab import speedups
from genlab.config import compose_run
from genlab.data.loaders import InMemoryBatchLoader
from genlab.hardware import skip_nvml_probe
from genlab.models.base import GenerativeModule

sys.path.insert(0, str(Path(__file__).parent))
from overhead import abba, machine, synchronize, write_section  # noqa: E402

# updates per batch: none, one (the VAE), two (a GAN), six (WGAN-GP: five critic steps and G)
UPDATES = (0, 1, 2, 6)
# genlab's default pieces that act on every batch or epoch (the pictures and the evaluation
# are left out: they depend on the model), from the configs a run composes
PIECES = {
    "TensorBoard logger": lambda cfg: cfg.logger.tensorboard,
    "progress bar": lambda cfg: cfg.callbacks.progress_bar,
    "divergence guard": lambda cfg: cfg.callbacks.divergence_guard,
    "run record": lambda cfg: {"_target_": "genlab.callbacks.run_record.RunRecord",
                               "config": {}, "params": {}},
}  # fmt: skip


class ScalarUpdates(GenerativeModule):
    """`updates` optimizer steps per batch on one scalar, through genlab's `optimize`."""

    def __init__(self, updates: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.updates = updates
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx: int) -> None:
        optimizer = self.optimizers()
        for _ in range(self.updates):
            self.optimize(self.weight * 1.0, optimizer)
        self.guard_values = {"weight": self.weight.detach()}  # for the divergence guard

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.weight], lr=0.0)


class Clock(L.Callback):
    """Microseconds per batch from the second epoch's start to the end of training."""

    def __init__(self) -> None:
        self.started = 0.0
        self.batches = 0
        self.us_per_batch = float("nan")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            synchronize(pl_module.device)
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += trainer.current_epoch >= 1

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.us_per_batch = (time.perf_counter() - self.started) / self.batches * 1e6


def datamodule(overrides: list[str]) -> L.LightningDataModule:
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose_run(overrides, Path(folder))
    return instantiate(cfg.data, _convert_="all")


def lightning_round(
    overrides: list[str], updates: int, epochs: int, device: torch.device, pieces: tuple = ()
) -> float:
    """Microseconds per batch; `pieces` names genlab's default pieces to add (PIECES)."""
    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:  # where the logger writes
        cfg = compose_run(overrides, Path(folder))
        added = [instantiate(PIECES[name](cfg)) for name in pieces]
        loggers = [piece for piece in added if isinstance(piece, Logger)]
        callbacks = [piece for piece in added if not isinstance(piece, Logger)]
        model = ScalarUpdates(updates)
        with speedups.applied(cfg.speedups):  # as in a genlab run
            trainer = L.Trainer(
                max_epochs=epochs + 1,
                callbacks=[*callbacks, clock],
                logger=loggers or False,
                enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
                log_every_n_steps=cfg.trainer.log_every_n_steps,
                enable_checkpointing=False,
                enable_model_summary=False,
                accelerator=device.type,
                devices=1,
            )
            data = instantiate(cfg.data, _convert_="all")
            trainer.fit(model, datamodule=data)
    # under manual optimization the global step counts optimizer steps
    batches = trainer.num_training_batches * (epochs + 1)
    assert trainer.global_step == updates * batches, (trainer.global_step, updates, batches)
    return clock.us_per_batch


def loop_round(overrides: list[str], updates: int, epochs: int, device: torch.device) -> float:
    data = datamodule(overrides)
    data.setup()
    tensors = tuple(t.to(device) for t in data.train_set)
    loader = InMemoryBatchLoader(tensors, data.batch_size, seed=0)
    weight = torch.nn.Parameter(torch.zeros((), device=device))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    batches = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for _ in loader:
            for _ in range(updates):
                optimizer.zero_grad(set_to_none=True)
                (weight * 1.0).backward()
                optimizer.step()
            batches += 1
    synchronize(device)
    return (time.perf_counter() - started) / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="experiment=vae_mnist_mini", help="an override")
    parser.add_argument("--epochs", type=int, default=20, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="two epochs, one round")
    parser.add_argument(
        "--parts", action="store_true", help="also time genlab's default pieces on the floor"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.rounds = 2, 1
    skip_nvml_probe()  # as genlab-train does; the loop side never imports Lightning's choice
    overrides = [args.data]
    device = torch.device(args.device)
    lines = [
        "| optimizer steps per batch | for loop (us per batch) | Lightning (us per batch) "
        "| Lightning's floor (us per batch) |",
        "|---|---|---|---|",
    ]
    for updates in UPDATES:
        loop, lightning = [], []
        for number in range(args.rounds):
            for side in abba(number, ("loop", "lightning")):
                if side == "loop":
                    loop.append(loop_round(overrides, updates, args.epochs, device))
                else:
                    lightning.append(lightning_round(overrides, updates, args.epochs, device))
        loop_us, lightning_us = statistics.median(loop), statistics.median(lightning)
        lines.append(
            f"| {updates} | {loop_us:.0f} | {lightning_us:.0f} | {lightning_us - loop_us:.0f} |"
        )
        print(lines[-1], flush=True)
    if args.parts:
        lines += ["", *parts(overrides, args.epochs, args.rounds, device)]
    batches = len(datamodule(overrides).train_dataloader())
    header = (
        f"Machine: {machine(device)}, device {device.type}.\n"
        f"Command: `{' '.join(['python bench/floor.py', *sys.argv[1:]])}`; data `{args.data}` "
        f"({batches} batches an epoch), {args.epochs} timed epochs per round, medians of "
        f"{args.rounds} rounds.\n"
    )
    write_section(Path(args.out), f"floor-{device.type}", header + "\n" + "\n".join(lines))


def parts(overrides: list[str], epochs: int, rounds: int, device: torch.device) -> list[str]:
    """What each of genlab's default pieces, and all of them, add to the one-update floor:
    rounds go through the variants forwards, then backwards."""
    variants = {"nothing": ()} | {name: (name,) for name in PIECES} | {"all": tuple(PIECES)}
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for number in range(rounds):
        for name, pieces in abba(number, tuple(variants.items())):
            timings[name].append(lightning_round(overrides, 1, epochs, device, pieces))
    bare = statistics.median(timings["nothing"])
    lines = [
        "| added to Lightning (one update a batch) | us per batch | added (us per batch) |",
        "|---|---|---|",
    ]
    for name, values in timings.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.0f} | {median - bare:+.0f} |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
