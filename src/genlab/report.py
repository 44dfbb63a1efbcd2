"""`genlab-report DIR`: one table and a few figures that compare the jobs of a sweep.

genlab-report outputs/multirun/2026-11-22/10-00-00-000000   # one sweep
genlab-report outputs                                         # the newest sweep in there

A sweep folder is one that holds Hydra's `multirun.yaml`, its jobs in the folders under it;
any other folder is refused unless sweeps lie below it. Reads each job's overrides and config
from the record of its latest start (`.hydra/`, or `.hydra/attempt-N/` after resumes), its
`metrics.json` and TensorBoard events; writes `report.md`, `report.csv` and PNGs (metrics
against each swept parameter, the loss curves of every job, the final samples side by side)
into the sweep folder, and prints the table.

Jobs that differ only in `seed` (e.g. `genlab-train -m experiment=X seed=0,1,2,3,4`) make one
row per group: each metric as mean ± standard deviation over the group's completed jobs
(report_groups.py); report.md then also lists every job, and report_jobs.csv holds their
rows. A recipe's `reference:` block adds published results beside the sweep's own
(report_reference.py).
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
from genlab.report_figures import group_points, job_points, plot_losses, plot_metrics, plot_samples
from genlab.report_groups import (
    NOT_SETTINGS,
    group_table,
    seed_groups,
    sort_groups,
    write_group_csv,
)
from genlab.report_reference import (
    Published,
    add_published,
    csv_row,
    on_columns,
    published_columns,
    published_rows,
)
from genlab.report_table import BEST_MARK, Table, best_first, best_of, format_value, maximized

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


def recorded_config(job: Job) -> tuple[str, dict]:
    """Where the job's latest config is recorded, and the config (empty when it is not)."""
    path = latest_record(job.folder) / "config.yaml"
    return str(path), (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def optimized_metric(jobs: list[Job]) -> str | None:
    for job in jobs:
        name = recorded_config(job)[1].get("optimized_metric")
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
    return sorted(jobs, key=lambda job: best_first(job.metrics.get(metric), metric, job.name))


def best_values(jobs: list[Job], metrics: list[str]) -> dict[str, float | None]:
    done = [job for job in jobs if job.status == "completed"]
    return {m: best_of([job.metrics.get(m, math.nan) for job in done], m) for m in metrics}


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
            + [v is not None and v == best[m] for m, v in zip(metrics, values, strict=True)]
            + [False]
        )
    return Table(header, rows, marks)


def write_csv(
    path: Path, jobs: list[Job], params: list[str], metrics: list[str],
    published: list[Published] = (),
) -> None:  # fmt: skip
    header = ["job", "status", *params, *metrics, "duration_s", "error", "folder"]
    header += ["source"] if published else []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for job in jobs:
            writer.writerow(
                [job.name, job.status, *(job.overrides.get(p, "") for p in params),
                 *(job.metrics.get(m, "") for m in metrics), job.duration_s or "",
                 job.error, str(job.folder)] + (["genlab"] if published else [])
            )  # fmt: skip
        writer.writerows(csv_row(row, header) for row in published)


# --- entry point -----------------------------------------------------------------------------


def report(path: Path, metric: str | None = None) -> tuple[Path, Table, list[Path]]:
    """Write the report of the sweep at (or newest under) `path`; return its folder, the
    table and the files written."""
    sweep = find_sweep(path)
    jobs = [read_job(folder) for folder in job_folders(sweep)]
    published = published_rows([recorded_config(job) for job in jobs])
    params = swept_parameters(jobs)
    metric = metric or optimized_metric(jobs)
    measured = metric_columns(jobs)
    if metric and metric not in measured and any(metric in job.metrics for job in jobs):
        measured.insert(0, metric)
    metrics = measured + published_columns(published, measured)  # published ones too
    published = on_columns(published, metrics)
    jobs = sort_jobs(jobs, metric)
    groups = sort_groups(seed_groups(jobs), metric)
    written = [sweep / "report.md", sweep / "report.csv"]
    if groups:
        shown = [p for p in params if p not in NOT_SETTINGS]
        table, points = group_table(groups, shown, metrics), group_points(groups, metrics)
        job_table = build_table(jobs, params, measured)
        write_group_csv(written[1], groups, shown, metrics, published)
        written.append(sweep / "report_jobs.csv")
        write_csv(written[-1], jobs, params, measured)
    else:
        shown, job_table = params, None
        table, points = build_table(jobs, params, metrics), job_points(jobs)
        write_csv(written[1], jobs, params, metrics, published)
    add_published(table, published, metrics)
    written[0].write_text(markdown(sweep, table, job_table, jobs, metric))
    if metrics and (shown or groups):
        written += plot_metrics(sweep, points, shown, metrics, published)
    written += [
        p for p in (plot_losses(sweep, jobs, params), plot_samples(sweep, jobs, params)) if p
    ]
    return sweep, table, written


def markdown(
    sweep: Path, table: Table, job_table: Table | None, jobs: list[Job], metric: str | None
) -> str:
    """report.md: the table (of seed groups, or of jobs), why jobs failed, then every job
    when the table shows groups."""
    lines = [f"# Sweep {sweep}", ""]
    if metric:
        direction = "higher" if maximized(metric) else "lower"
        best = "mean" if job_table else "value"
        lines.append(
            f"Sorted by `{metric}` ({direction} is better); the best {best} of each metric is bold."
        )
    lines += [f"\n{line}." for line in table.legend]
    lines += ["", table.markdown()]
    failed = [job for job in jobs if job.status not in ("completed",)]
    lines += [f"- `{job.name}` {job.status}: {job.error}" for job in failed if job.error]
    if job_table:
        lines += ["", "## Jobs", "", job_table.markdown()]
    return "\n".join(lines) + "\n"


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
    print("\n".join(table.legend))
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
