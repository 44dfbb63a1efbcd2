"""`genlab-report DIR`: one table and a few figures that compare the jobs of a sweep.

genlab-report outputs/multirun/2026-11-22/10-00-00-000000   # one sweep
genlab-report outputs                                         # the newest sweep in there

A sweep folder is one that holds Hydra's `multirun.yaml`, its jobs in the folders under it;
any other folder is refused unless sweeps lie below it. Reads each job's overrides and config
from the record of its latest start (`.hydra/`, or `.hydra/attempt-N/` after resumes), its
`metrics.json` and TensorBoard events; writes `report.md`, `report.csv` and PNGs (metrics
against each swept parameter, the loss curves of every job, the final samples side by side)
into the sweep folder, and prints the table.
"""

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from genlab.attempts import latest_record, recorded_overrides
from genlab.errors import GenlabError, require

# Metrics where larger is better; every other metric is better smaller (fd, nll, losses, ...).
MAXIMIZED = {
    "precision", "recall", "density", "coverage", "modes", "hq", "class_entropy",
    "cond_acc", "real_acc", "elbo", "iwae", "replicas_in_sync", "psnr", "label_kept",
}  # fmt: skip
BEST_MARK = "*"
# Not scores: how many samples a metric compared (in metrics.json, not in the table)
SAMPLE_COUNTS = {"prdc_n"}


@dataclass
class Job:
    folder: Path
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    duration_s: float | None = None

    @property
    def name(self) -> str:
        return self.folder.name


def maximized(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1]
    return name in MAXIMIZED or name.startswith("iwae_k")


def is_sweep(folder: Path) -> bool:
    """A sweep folder holds Hydra's `multirun.yaml` (written when the sweep starts), its jobs
    in the folders under it."""
    return (folder / "multirun.yaml").is_file()


def find_sweep(path: Path) -> Path:
    """The sweep folder itself, or the newest sweep under `path` (e.g. `outputs/`). Any
    other folder (a single run's, a folder of single runs) is refused: its runs are not
    jobs of one sweep."""
    require(path.exists(), f"{path} does not exist; pass a multirun folder or outputs/")
    if is_sweep(path):
        require(
            bool(job_folders(path)),
            f"{path} is a sweep folder but holds no job folders yet (no */.hydra/overrides.yaml)",
        )
        return path
    sweeps = [p.parent for p in path.rglob("multirun.yaml")]
    sweeps = [s for s in sweeps if job_folders(s)]
    require(
        bool(sweeps),
        f"{path} is not a sweep folder (no multirun.yaml) and holds no sweep; pass the folder "
        "a -m run printed, e.g. outputs/multirun/<date>/<time>",
    )
    return max(sweeps, key=lambda s: (s / "multirun.yaml").stat().st_mtime)


def job_folders(sweep: Path) -> list[Path]:
    jobs = [p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml")]
    return sorted(jobs, key=lambda p: (len(p.name), p.name))


def read_overrides(job: Path) -> dict[str, str]:
    items = recorded_overrides(latest_record(job))
    pairs = (item.split("=", 1) for item in items if "=" in item)
    return {key.lstrip("+~"): value for key, value in pairs}


def read_job(folder: Path) -> Job:
    overrides = read_overrides(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        return Job(folder, overrides, "missing", error="no metrics.json (still running or killed)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return Job(folder, overrides, "corrupt", error="metrics.json is not valid JSON")
    metrics = {k: float(v) for k, v in record.get("metrics", {}).items()}
    return Job(
        folder,
        overrides,
        record.get("status", "unknown"),
        metrics,
        record.get("error", ""),
        record.get("duration_s"),
    )


def swept_parameters(jobs: list[Job]) -> list[str]:
    """The overrides whose values differ between jobs (all of them for a single job)."""
    keys = sorted({k for job in jobs for k in job.overrides})
    if len(jobs) == 1:
        return keys
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def optimized_metric(sweep: Path, jobs: list[Job]) -> str | None:
    for job in jobs:
        config = latest_record(job.folder) / "config.yaml"
        if config.is_file():
            name = (yaml.safe_load(config.read_text()) or {}).get("optimized_metric")
            if name:
                return name
    return None


def metric_columns(jobs: list[Job]) -> list[str]:
    names = sorted(
        {
            k
            for job in jobs
            for k in job.metrics
            if k.startswith(("eval/", "ddp/")) and k.split("/")[-1] not in SAMPLE_COUNTS
        }
    )
    return names or sorted({k for job in jobs for k in job.metrics})


def sort_jobs(jobs: list[Job], metric: str | None) -> list[Job]:
    def key(job: Job):
        value = job.metrics.get(metric, math.nan) if metric else math.nan
        if not math.isfinite(value):
            return (1, 0.0, job.name)
        return (0, -value if maximized(metric) else value, job.name)

    return sorted(jobs, key=key)


def best_values(jobs: list[Job], metrics: list[str]) -> dict[str, float]:
    best = {}
    for metric in metrics:
        values = [
            job.metrics[metric]
            for job in jobs
            if job.status == "completed" and math.isfinite(job.metrics.get(metric, math.nan))
        ]
        if values:
            best[metric] = max(values) if maximized(metric) else min(values)
    return best


def format_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        for row, best in zip(self.rows, self.best, strict=True):
            cells = [f"**{c}**" if b else c for c, b in zip(row, best, strict=True)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        cells = [self.header] + [
            [c + (BEST_MARK if b else "") for c, b in zip(row, best, strict=True)]
            for row, best in zip(self.rows, self.best, strict=True)
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.header))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells
        )


def build_table(jobs: list[Job], params: list[str], metrics: list[str]) -> Table:
    best = best_values(jobs, metrics)
    header = ["job", "status", *params, *metrics, "time_s"]
    rows, marks = [], []
    for job in jobs:
        values = [job.metrics.get(m) for m in metrics]
        rows.append(
            [job.name, job.status, *(job.overrides.get(p, "") for p in params),
             *(format_value(v) for v in values), format_value(job.duration_s)]
        )  # fmt: skip
        marks.append(
            [False] * (2 + len(params))
            + [m in best and v == best[m] for m, v in zip(metrics, values, strict=True)]
            + [False]
        )
    return Table(header, rows, marks)


def write_csv(path: Path, jobs: list[Job], params: list[str], metrics: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["job", "status", *params, *metrics, "duration_s", "error", "folder"])
        for job in jobs:
            writer.writerow(
                [job.name, job.status, *(job.overrides.get(p, "") for p in params),
                 *(job.metrics.get(m, "") for m in metrics), job.duration_s or "",
                 job.error, str(job.folder)]
            )  # fmt: skip


# --- figures -------------------------------------------------------------------------------


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def setting(job: Job, key: str) -> str:
    """The job's value of an override; "default" where the job did not override it."""
    return job.overrides.get(key, "default")


def value_order(value: str) -> tuple:
    """Numbers in increasing order, then words."""
    number = as_number(value)
    return (number is None, number or 0.0, value)


def plot_metrics(sweep: Path, jobs: list[Job], params: list[str], metrics: list[str]) -> list[Path]:
    """One PNG per swept parameter: each metric against it, one line per setting of the other
    parameters."""
    import matplotlib.pyplot as plt

    from genlab.plotting import figure_to_array, save_png

    done = [job for job in jobs if job.status == "completed"]
    written = []
    for param in params:
        others = [p for p in params if p != param]
        cols = min(3, len(metrics)) or 1
        rows = max(1, math.ceil(len(metrics) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        values = [setting(job, param) for job in done]
        numeric = all(as_number(v) is not None for v in values)
        order = sorted(set(values), key=value_order)
        for ax, metric in zip(axes.flat, metrics, strict=False):
            groups: dict[str, list[Job]] = {}
            for job in done:
                label = ",".join(f"{p}={setting(job, p)}" for p in others)
                groups.setdefault(label, []).append(job)
            for label, members in sorted(groups.items()):
                members = sorted(members, key=lambda j: order.index(setting(j, param)))
                xs = [
                    as_number(setting(j, param)) if numeric else order.index(setting(j, param))
                    for j in members
                ]
                ys = [j.metrics.get(metric, math.nan) for j in members]
                ax.plot(xs, ys, marker="o", label=label or None)
            if numeric and len(order) > 1:
                low, high = float(order[0]), float(order[-1])
                if low > 0 and high / low >= 10:
                    ax.set_xscale("log")
            elif not numeric:
                ax.set_xticks(range(len(order)), order, rotation=20)
            ax.set_xlabel(param)
            ax.set_title(metric + (" (higher is better)" if maximized(metric) else ""))
        for ax in list(axes.flat)[len(metrics) :]:
            ax.axis("off")
        if others:
            axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        safe = param.replace("/", "_")
        written.append(save_png(figure_to_array(fig), sweep / f"report_{safe}.png"))
    return written


def read_scalars(job: Job, prefix: str = "loss/") -> dict[str, tuple[list[int], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, tuple[list[int], list[float]]] = {}
    for event_file in sorted(job.folder.rglob("events.out.tfevents.*")):
        events = EventAccumulator(str(event_file), size_guidance={"scalars": 0}).Reload()
        for tag in events.Tags()["scalars"]:
            if tag.startswith(prefix):
                points = events.Scalars(tag)
                steps, values = curves.setdefault(tag, ([], []))
                steps += [p.step for p in points]
                values += [p.value for p in points]
    return curves


def plot_losses(sweep: Path, jobs: list[Job], params: list[str]) -> Path | None:
    """The loss curves of every job overlaid, one panel per loss, from TensorBoard's events."""
    import matplotlib.pyplot as plt

    from genlab.plotting import figure_to_array, save_png

    curves = {job.name: read_scalars(job) for job in jobs}
    tags = sorted({tag for per_job in curves.values() for tag in per_job})
    if not tags:
        return None
    fig, axes = plt.subplots(1, len(tags), figsize=(4.5 * len(tags), 3.5), squeeze=False)
    for ax, tag in zip(axes.flat, tags, strict=True):
        for job in jobs:
            if tag in curves[job.name]:
                steps, values = curves[job.name][tag]
                ax.plot(steps, values, label=job_label(job, params), linewidth=1)
        ax.set_title(tag)
        ax.set_xlabel("step")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return save_png(figure_to_array(fig), sweep / "report_losses.png")


def job_label(job: Job, params: list[str]) -> str:
    return ",".join(f"{p.rsplit('.', 1)[-1]}={setting(job, p)}" for p in params) or job.name


def plot_samples(sweep: Path, jobs: list[Job], params: list[str]) -> Path | None:
    """Each job's final scatter (points) or grid (images), side by side."""
    import matplotlib.pyplot as plt

    from genlab.plotting import figure_to_array, save_png

    shown = [(job, job.folder / "samples" / "last.png") for job in jobs]
    shown = [(job, path) for job, path in shown if path.is_file()]
    if not shown:
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4.3 * rows), squeeze=False)
    for ax, (job, path) in zip(axes.flat, shown, strict=False):
        image = plt.imread(path)  # a grid of one-channel images is stored grey
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(job.name, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return save_png(figure_to_array(fig), sweep / "report_samples.png")


# --- entry point -----------------------------------------------------------------------------


def report(path: Path, metric: str | None = None) -> tuple[Path, Table, list[Path]]:
    """Write the report of the sweep at (or newest under) `path`; return its folder, the
    table and the files written."""
    sweep = find_sweep(path)
    jobs = [read_job(folder) for folder in job_folders(sweep)]
    params = swept_parameters(jobs)
    metric = metric or optimized_metric(sweep, jobs)
    metrics = metric_columns(jobs)
    if metric and metric not in metrics and any(metric in job.metrics for job in jobs):
        metrics.insert(0, metric)
    jobs = sort_jobs(jobs, metric)
    table = build_table(jobs, params, metrics)
    lines = [f"# Sweep {sweep}", ""]
    if metric:
        direction = "higher" if maximized(metric) else "lower"
        lines.append(
            f"Sorted by `{metric}` ({direction} is better); the best value of each metric is bold."
        )
    lines += ["", table.markdown()]
    failed = [job for job in jobs if job.status not in ("completed",)]
    lines += [f"- `{job.name}` {job.status}: {job.error}" for job in failed if job.error]
    written = [sweep / "report.md", sweep / "report.csv"]
    written[0].write_text("\n".join(lines) + "\n")
    write_csv(written[1], jobs, params, metrics)
    written += plot_metrics(sweep, jobs, params, metrics) if params and metrics else []
    written += [
        p for p in (plot_losses(sweep, jobs, params), plot_samples(sweep, jobs, params)) if p
    ]
    return sweep, table, written


class SweepReport(Callback):
    """A Hydra callback: prints and writes the report when a multirun ends. It also writes
    the sweep's `multirun.yaml` as the multirun starts, as Hydra's basic sweeper does (and
    then writes again), so that every sweep folder holds one, the Optuna sweeper's too."""

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        sweep.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep / "multirun.yaml")

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            sweep, table, written = report(Path(config.hydra.sweep.dir))
        except GenlabError as error:  # e.g. every job failed before writing anything
            print(f"genlab-report: {error}", flush=True)
            return
        print_report(sweep, table, written)


def print_report(sweep: Path, table: Table, written: list[Path]) -> None:
    print(f"\nSweep: {sweep}")
    print(table.text())
    print(f"({BEST_MARK} best of each metric)")
    print("Wrote: " + ", ".join(p.name for p in written), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="genlab-report", description="Compare the jobs of a genlab-train multirun."
    )
    parser.add_argument("path", nargs="?", default="outputs", help="a sweep folder or outputs/")
    parser.add_argument("--metric", help="sort by this metric (default: optimized_metric)")
    args = parser.parse_args(argv)
    try:
        sweep, table, written = report(Path(args.path), args.metric)
    except GenlabError as error:
        print(f"genlab-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print_report(sweep, table, written)


if __name__ == "__main__":
    main()
