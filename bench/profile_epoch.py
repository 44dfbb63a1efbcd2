"""Where the time of genlab's training goes, for one workload.

Runs `genlab.train.train` for a few epochs under cProfile (the Python side: the model's
step, Lightning's loop and hooks, the callbacks) and, for one epoch, under the PyTorch
profiler (the operators), then prints a breakdown of the fit time and the top operators.

    python bench/profile_epoch.py                           # DCGAN on mnist_mini 32x32, CPU
    python bench/profile_epoch.py --workload moons --epochs 2
    python bench/profile_epoch.py --device cuda --workload dcgan64
"""

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from overhead import GPU_WORKLOADS, WORKLOADS, compose_config, write_section  # noqa: E402

from genlab.train import train  # noqa: E402

SHORT_NAMES = {"moons": "moons", "dcgan": "DCGAN mnist_mini 32", "wgan_gp": "WGAN-GP",
               "vae": "VAE", "dcgan64": "64x64"}  # fmt: skip
# (label, function name as cProfile reports it, file fragment)
PARTS = [
    ("fit (the whole training loop)", "fit", "trainer/trainer.py"),
    ("the model's training_step", "training_step", "genlab/models"),
    (
        "  forward passes of the nets (nested modules overlap)",
        "_call_impl",
        "torch/nn/modules/module.py",
    ),
    ("  backward passes (autograd)", "run_backward", ""),
    ("  optimizer steps (Adam, RMSprop)", "wrapper", "torch/optim/optimizer.py"),
    ("  toggled_optimizer", "toggled_optimizer", "core/module.py"),
    ("Lightning's callback hook dispatch", "_call_callback_hooks", "trainer/call.py"),
    ("  sample pictures (epoch end)", "draw", "genlab/callbacks/samples.py"),
    ("  divergence guard", "check", "genlab/callbacks/guard.py"),
    ("batch loader", "__iter__", "genlab/data/loaders.py"),
    ("logging (self.log)", "log_dict", "core/module.py"),
]


def profiled_run(overrides: list[str], epochs: int, profiler=None) -> pstats.Stats:
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose_config(overrides + [f"trainer.max_epochs={epochs}"], Path(folder))
        profile = cProfile.Profile()
        profile.enable()
        if profiler is None:
            train(cfg)
        else:
            with profiler:
                train(cfg)
        profile.disable()
    return pstats.Stats(profile)


def cumulative(stats: pstats.Stats, name: str, fragment: str) -> tuple[float, int]:
    """Total cumulative seconds and calls of the functions called `name` in files matching
    `fragment` (outermost calls only, as cProfile counts recursion once)."""
    seconds, calls = 0.0, 0
    for (filename, _, function), (_, ncalls, _, cum, _) in stats.stats.items():
        if function.endswith(name) and fragment in filename:
            seconds += cum
            calls += ncalls
    return seconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="dcgan", choices=sorted(SHORT_NAMES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="", help="also write the breakdown into this file")
    args = parser.parse_args()
    workloads = WORKLOADS | GPU_WORKLOADS
    name = next(n for n in workloads if SHORT_NAMES[args.workload] in n)
    overrides = list(workloads[name][0])
    if args.device == "cuda":
        overrides.insert(0, "hardware=gpu")

    stats = profiled_run(overrides, args.epochs)
    fit, _ = cumulative(stats, "fit", "trainer/trainer.py")
    if not fit:  # the profiler saw no Trainer.fit (another profiler took the hook)
        stats.sort_stats("cumulative").print_stats(30)
        fit = float("nan")
    lines = [
        f"Profile of `genlab-train {' '.join(overrides)}`, {args.epochs} epoch(s) on "
        f"{args.device} (cProfile, which slows Python-heavy parts more than the operators):",
        "",
        "| part | seconds | share of fit | calls |",
        "|---|---|---|---|",
    ]
    for label, function, fragment in PARTS:
        seconds, calls = cumulative(stats, function, fragment)
        lines.append(f"| {label} | {seconds:.2f} | {seconds / fit:.0%} | {calls} |")
    print("\n".join(lines))

    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = torch.profiler.profile(activities=activities)
    profiled_run(overrides, 1, profiler)
    operators = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    if args.device == "cuda":
        operators += "\n" + profiler.key_averages().table(
            sort_by="self_cuda_time_total", row_limit=15
        )
    print(operators)
    if args.out:
        text = "\n".join(lines) + "\n\nTop operators (one epoch, PyTorch profiler):\n\n```\n"
        write_section(
            Path(args.out), f"profile-{args.workload}-{args.device}", text + operators + "```"
        )


if __name__ == "__main__":
    main()
