"""What does genlab cost over the loop a user would write by hand?

Times `genlab-train`'s training loop (the real `genlab.train.train`, default logging on:
TensorBoard scalars, the epoch's sample grid or scatter, the divergence guard) against a
plain PyTorch loop written below, with the same nets, losses, optimizers, batch size and
data, doing the same alternating steps. Rounds alternate in one process (genlab, plain,
plain, genlab, genlab, plain, ...: a steady drift of the machine favours neither); each
reports steps (batches) per second over the steps after a warm-up, and the table gives the
median of each and their ratio, and the range of the ratios of each genlab round to the plain
round beside it (how far the machine's drift moves one round).

Not counted on either side: start-up (data loading, building the nets), checkpoints and the
sample-quality evaluation, which the plain loop does not do.

    python bench/overhead.py                      # CPU, the four workloads -> bench/results.md
    python bench/overhead.py --device cuda        # the same on a GPU (fp32)
    python bench/overhead.py --quick --out /tmp/r.md   # a few steps each: does it all run?
    python bench/overhead.py --only VAE --compare model.optimizer.fused=null  # an A/B in genlab
    python bench/overhead.py --genlab speedups=false  # genlab without its speedups (own section)
"""

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from genlab.build import instantiate_model
from genlab.config import compose_run
from genlab.data.pixels import to_model_range
from genlab.hardware import skip_nvml_probe
from genlab.losses import gaussian_kl, gradient_penalty
from genlab.models.gan_terms import GradientPenalty, WeightClipping
from genlab.train import train

# workload -> (overrides, target ratio genlab / plain, batches per round on a CPU)
WORKLOADS = {
    "moons GAN (MLP, batch 256)": (["model=gan", "data=moons", "data.batch_size=256"], 0.90, 400),
    "DCGAN mnist_mini 32x32 (batch 64)": (
        ["model=dcgan", "data=mnist_mini", "data.image_size=32", "data.batch_size=64"],
        0.95,
        62,
    ),
    "WGAN-GP ring (5 critic steps)": (["model=wgan_gp", "data=ring"], 0.90, 200),
    "VAE mnist_mini (MLP, batch 100)": (["experiment=vae_mnist_mini"], 0.95, 400),
}
GPU_WORKLOADS = {
    "DCGAN mnist_mini 64x64 (batch 128)": (
        ["model=dcgan", "data=mnist_mini", "data.image_size=64", "data.batch_size=128"],
        0.95,
        310,
    ),
}
# (precision, torch.compile) per device
VARIANTS = {
    "cpu": [("32-true", False)],
    "cuda": [("32-true", False), ("bf16-mixed", False), ("bf16-mixed", True)],
}
# the default callbacks that log or show progress (genlab's progress bar redraws every 10
# batches; without it Lightning would add its own, redrawn every batch); checkpoints and the
# evaluation are left out on both sides
KEPT_CALLBACKS = (
    "sample_plots", "divergence_guard", "progress_bar", "chart_runs", "epoch_log",
)  # fmt: skip


def abba(number: int, sides: tuple) -> tuple:
    """The order of the sides in round `number`: as given in even rounds, reversed in odd ones
    (A B, B A, A B, ...), so that a machine that speeds up or slows down over a run favours
    no side."""
    return sides if number % 2 == 0 else sides[::-1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Times genlab's loop from batch `warmup` to the end of training (epoch-end pictures
    included), and splits the time into: inside a step (`on_train_batch_start` to
    `on_train_batch_end`: the model's update and Lightning's hooks around it), between two
    steps of an epoch (fetching the batch, logging, progress), and between epochs (epoch end
    and start: pictures, epoch logging, the loader's new order). The latest instance is
    `StepTimer.latest`."""

    latest: "StepTimer | None" = None

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.batches = 0
        self.started = 0.0
        self.steps_per_s = float("nan")
        self.step_started = 0.0
        self.last_end: tuple[int, float] | None = None
        self.in_step: list[float] = []
        self.between: list[float] = []
        self.turnover: list[float] = []
        StepTimer.latest = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.warmup:
            synchronize(pl_module.device)
            self.started = time.perf_counter()
        self.batches += 1
        now = time.perf_counter()
        if self.batches > self.warmup + 1:  # gaps after the clock started
            epoch, ended = self.last_end
            (self.between if epoch == trainer.current_epoch else self.turnover).append(now - ended)
        self.step_started = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.batches > self.warmup:
            self.in_step.append(now - self.step_started)
        self.last_end = (trainer.current_epoch, now)

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        now = time.perf_counter()
        self.steps_per_s = (self.batches - self.warmup) / (now - self.started)
        if self.last_end is not None:  # the last epoch's end counts as a turnover
            self.turnover.append(now - self.last_end[1])

    def breakdown(self) -> dict[str, float]:
        """Milliseconds per timed step of each part (inside a step, between steps, the
        epochs' turnover: they add up to the step time that the rate gives), the median
        step inside (the typical step, without the logging steps and the slow ones), and the
        median turnover of one epoch; nan where a part was not seen."""
        steps = max(1, self.batches - self.warmup)

        def median_ms(values: list[float]) -> float:
            return statistics.median(values) * 1e3 if values else float("nan")

        return {
            "in_step": sum(self.in_step) * 1e3 / steps,
            "between": sum(self.between) * 1e3 / steps,
            "turnover": sum(self.turnover) * 1e3 / steps,
            "in_step_median": median_ms(self.in_step),
            "epoch_turnover": median_ms(self.turnover),
        }


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    cfg = compose_run(overrides, output_dir)
    with open_dict(cfg):
        cfg.trainer.enable_model_summary = False
        cfg.optimized_metric = None
        # no checkpoints on either side (Lightning would add its own ModelCheckpoint)
        cfg.trainer.enable_checkpointing = False
        for name in list(cfg.callbacks):
            if name not in KEPT_CALLBACKS:
                del cfg.callbacks[name]
    return cfg


def plan(overrides: list[str], steps: int) -> tuple[int, int]:
    """(batches per epoch, epochs) so that a genlab round runs about `steps` batches."""
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose_config(overrides, Path(folder))
        data = instantiate(cfg.data, _convert_="all")
        data.setup()
    per_epoch = len(data.train_set[0]) // data.batch_size
    batches = min(per_epoch, steps)
    return batches, max(1, math.ceil(steps / batches))


def genlab_round(overrides: list[str], batches: int, epochs: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose_config(
            overrides
            + [f"trainer.limit_train_batches={batches}", f"trainer.max_epochs={epochs}"]
            # a run shorter than the logging interval (--quick) logs every step, to check losses
            + (["trainer.log_every_n_steps=1"] if batches * epochs < 50 else []),
            Path(folder),
        )
        with open_dict(cfg):
            cfg.callbacks.step_timer = {"_target_": f"{__name__}.StepTimer", "warmup": warmup}
        metrics = train(cfg)
    losses = [v for k, v in metrics.items() if k.startswith("loss/")]
    assert losses and all(math.isfinite(v) for v in losses), metrics
    return StepTimer.latest.steps_per_s


def build(overrides: list[str], device: torch.device):
    """The same model and data genlab would build, for the plain loop."""
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose_config(overrides, Path(folder))
    L.seed_everything(cfg.seed, verbose=False)
    data = instantiate(cfg.data, _convert_="all")
    data.setup()
    model = instantiate_model(cfg.model)[0].to(device).train()
    return model, data.train_set[0].to(device), data.batch_size


def batches_of(x: torch.Tensor, batch_size: int, total: int):
    """`total` batches of x from fresh permutations, like genlab's in-memory loader (images
    stored as uint8 become float in [-1, 1] on the device, as there)."""
    served = 0
    while True:
        order = torch.randperm(len(x), device=x.device)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            if served == total:
                return
            served += 1
            yield to_model_range(x[order[start : start + batch_size]])


def autocast(device: torch.device, precision: str):
    """bf16 autocast around the forward passes, as Lightning's bf16-mixed does."""
    enabled = precision.startswith("bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def timed(step, batches, warmup: int, device: torch.device) -> float:
    """Steps per second of `step(batch)` over the batches after the first `warmup`; the
    losses `step` returns must end finite."""
    for index, batch in enumerate(batches):
        if index == warmup:
            synchronize(device)
            started = time.perf_counter()
        losses = step(batch)
    synchronize(device)
    elapsed = time.perf_counter() - started
    assert all(math.isfinite(float(loss)) for loss in losses), losses
    return (index + 1 - warmup) / elapsed


def optimizers_of(model) -> list[torch.optim.Optimizer]:
    """The model's own optimizers (the same settings and learning rates), without schedules."""
    built = model.configure_optimizers()
    if isinstance(built, tuple):  # (optimizers, schedulers)
        built = built[0]
    if isinstance(built, dict):
        built = built["optimizer"]
    return built if isinstance(built, list) else [built]


def plain_gan(
    model, x: torch.Tensor, batch_size: int, total: int, warmup: int, precision: str
) -> float:
    """The DCGAN tutorial's loop: D on real and detached fakes, then G through D."""
    generator, discriminator, loss = model.generator, model.discriminator, model.loss
    opt_g, opt_d = optimizers_of(model)
    gp_weight = next((t.weight for t in model.terms if isinstance(t, GradientPenalty)), 0.0)
    clip = next((t.clip for t in model.terms if isinstance(t, WeightClipping)), None)
    device = x.device

    def score(samples: torch.Tensor) -> torch.Tensor:
        return discriminator(samples).score

    def step(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(model.critic_steps):
            with autocast(device, precision):
                noise = torch.randn(batch_size, model.latent_dim, device=device)
                fake = generator(noise).detach()
                loss_d = loss.discriminator(score(real), score(fake))
                if gp_weight:
                    loss_d = loss_d + gp_weight * gradient_penalty(score, real, fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if clip:
                with torch.no_grad():
                    for parameter in discriminator.parameters():
                        parameter.clamp_(-clip, clip)
        with autocast(device, precision):
            fake = generator(torch.randn(batch_size, model.latent_dim, device=device))
            loss_g = loss.generator(score(fake))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return loss_d, loss_g

    return timed(step, batches_of(x, batch_size, total), warmup, device)


def plain_vae(
    model, x: torch.Tensor, batch_size: int, total: int, warmup: int, precision: str
) -> float:
    """The seed's VAE loop: Bernoulli reconstruction plus KL, summed per image."""
    encoder, decoder = model.encoder, model.decoder
    (optimizer,) = optimizers_of(model)
    device = x.device

    def step(batch: torch.Tensor) -> tuple[torch.Tensor]:
        with autocast(device, precision):
            mu, logvar = encoder(batch).chunk(2, dim=1)
            logvar = logvar.clamp(-12.0, 8.0)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            logits = decoder(z)
            targets = (batch + 1) / 2
            rec = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            loss = (rec.flatten(1).sum(1) + gaussian_kl(mu, logvar)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return (loss,)

    return timed(step, batches_of(x, batch_size, total), warmup, device)


def plain_round(
    overrides: list[str], total: int, warmup: int, device: torch.device, precision: str,
    compile_nets: bool,
) -> float:  # fmt: skip
    model, x, batch_size = build(overrides, device)
    # the same memory format and compilation as genlab's (channels_last=auto: on for images
    # on a GPU)
    model.speed_up(compile_nets, channels_last=device.type == "cuda" and x.dim() == 4)
    loop = plain_vae if hasattr(model, "encoder") else plain_gan
    return loop(model, x, batch_size, total, warmup, precision)


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    text += f", {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=0, help="batches per round (0: each workload's own)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="batches not timed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--only", default="", help="workloads whose name contains this (several: a,b)"
    )
    parser.add_argument("--quick", action="store_true", help="a few steps each, one round")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    parser.add_argument(
        "--genlab",
        nargs="+",
        default=[],
        metavar="OVERRIDE",
        help="overrides for genlab's side only, e.g. speedups=false (its own section)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="OVERRIDE",
        help="instead: genlab's loop with these overrides against genlab's loop without "
        "them, rounds alternating (prints the rates; writes nothing)",
    )
    args = parser.parse_args()
    # importing Lightning asked torch for an NVML-based CUDA check that slows every optimizer
    # step where there is no GPU; genlab-train drops it there, and a loop written by hand,
    # which does not import Lightning, never has it: neither side pays it
    skip_nvml_probe()
    if args.quick:
        args.steps, args.warmup, args.rounds = 6, 2, 1
    if args.compare:
        compare(args)
        return
    device = torch.device(args.device)
    workloads = WORKLOADS | (GPU_WORKLOADS if device.type == "cuda" else {})
    rows, splits = [], []
    for name, (overrides, target, default_steps) in workloads.items():
        if not chosen(name, args.only):
            continue
        for precision, compile_nets in VARIANTS[device.type]:
            variant = precision + (" + compile" if compile_nets else "")
            run = overrides + [f"trainer.precision={precision}", f"model.compile={compile_nets}"]
            if device.type == "cuda":
                run.insert(0, "hardware=gpu")
            batches, epochs = plan(run, args.steps or default_steps)
            total = batches * epochs
            warmup = min(args.warmup, total // 2)
            ours, plain, parts = [], [], []
            for number in range(args.rounds):
                for side in abba(number, ("genlab", "plain")):
                    if side == "genlab":
                        ours.append(genlab_round(run + args.genlab, batches, epochs, warmup))
                        parts.append(StepTimer.latest.breakdown())
                    else:
                        plain.append(
                            plain_round(run, total, warmup, device, precision, compile_nets)
                        )
            ours_median, plain_median = statistics.median(ours), statistics.median(plain)
            batch_size = batch_size_of(run)
            # each round's genlab rate over the plain rate measured beside it: how far the
            # machine's drift moves the ratio
            paired = [o / p for o, p in zip(ours, plain, strict=True)]
            rows.append(
                (name, variant, ours_median, plain_median, target, batch_size, min(paired),
                 max(paired))
            )  # fmt: skip
            split = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
            splits.append((name, variant, 1e3 / plain_median, 1e3 / ours_median, split, batches))
            print(
                f"{name} [{variant}]: genlab {ours_median:.1f} steps/s, plain "
                f"{plain_median:.1f} steps/s, ratio {ours_median / plain_median:.3f} "
                f"(target >= {target}); rounds {[round(v, 1) for v in ours]} vs "
                f"{[round(v, 1) for v in plain]}",
                flush=True,
            )

    lines = [
        "| workload | precision | genlab steps/s | plain loop steps/s | genlab samples/s "
        "| plain samples/s | ratio | rounds' ratios | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, variant, ours_median, plain_median, target, batch_size, low, high in rows:
        ratio = ours_median / plain_median
        lines.append(
            f"| {name} | {variant} | {ours_median:.1f} | {plain_median:.1f} "
            f"| {ours_median * batch_size:,.0f} | {plain_median * batch_size:,.0f} "
            f"| {ratio:.3f} | {low:.2f}-{high:.2f} | {target} | {'yes' if ratio >= target else 'no'} |"
        )
    header = (
        f"Machine: {machine(device)}, device {device.type}.\n"
        f"Command: `python bench/overhead.py {' '.join(sys.argv[1:])}`; {args.rounds} rounds "
        f"of {args.steps or 'a per-workload number of'} batches (medians; "
        f"{args.warmup} warm-up batches untimed).\n"
    )
    lines += [
        "",
        "Where genlab's time goes (milliseconds per step, medians over the rounds): a "
        "plain-loop step; a genlab step (from its rate) and its parts, which add up to it: "
        "inside a step (the update and Lightning's hooks around it), between two steps of an "
        "epoch (fetching the batch, the progress bar), and the epochs' turnover (epoch-end "
        "pictures and logging, the next epoch's start), spread over the steps. The typical "
        "step inside is the median one: the mean is above it by the logging steps (every "
        "`log_every_n_steps`) and the machine's slow moments. Last, one epoch's turnover.",
        "",
        "| workload | precision | plain step | genlab step | in step | between steps "
        "| epoch turnover | typical step inside | one epoch's turnover | steps per epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, variant, plain_ms, genlab_ms, split, batches in splits:
        lines.append(
            f"| {name} | {variant} | {plain_ms:.2f} | {genlab_ms:.2f} | {split['in_step']:.2f} "
            f"| {split['between']:.2f} | {split['turnover']:.2f} "
            f"| {split['in_step_median']:.2f} | {split['epoch_turnover']:.1f} | {batches} |"
        )
    key = "-".join([f"overhead-{device.type}", *args.genlab]).replace("=", "-")
    write_section(Path(args.out), key, header + "\n" + "\n".join(lines))
    print("\n".join(lines))


def compare(args: argparse.Namespace) -> None:
    """A/B in genlab's own loop: each workload with and without `args.compare`."""
    for name, (overrides, _, default_steps) in WORKLOADS.items():
        if not chosen(name, args.only):
            continue
        batches, epochs = plan(overrides, args.steps or default_steps)
        warmup = min(args.warmup, batches * epochs // 2)
        rates: dict[str, list[float]] = {"default": [], "with overrides": []}
        for number in range(args.rounds):
            for side in abba(number, ("with overrides", "default")):
                extra = args.compare if side == "with overrides" else []
                rates[side].append(genlab_round(overrides + extra, batches, epochs, warmup))
        medians = {k: statistics.median(v) for k, v in rates.items()}
        print(
            f"{name}: default {medians['default']:.1f} steps/s, with {' '.join(args.compare)} "
            f"{medians['with overrides']:.1f} steps/s, default / with "
            f"{medians['default'] / medians['with overrides']:.3f}; rounds "
            f"{[round(v, 1) for v in rates['default']]} vs "
            f"{[round(v, 1) for v in rates['with overrides']]}",
            flush=True,
        )


def chosen(name: str, only: str) -> bool:
    """Whether the workload `name` is among those `--only` names (comma-separated parts)."""
    return any(part in name for part in only.split(","))


def batch_size_of(overrides: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        return int(compose_config(overrides, Path(folder)).data.batch_size)


def write_section(path: Path, key: str, text: str) -> None:
    """Put `text` between `<!-- key -->` and `<!-- /key -->` in the file, replacing what was
    there (appending the section when absent), so that each benchmark updates its own table."""
    start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = path.read_text() if path.is_file() else "# genlab benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
