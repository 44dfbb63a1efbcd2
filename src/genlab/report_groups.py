"""Seed groups: the jobs of a sweep that differ only in `seed`, reported as one row each.

A group's metrics (and its jobs' wall time) are the mean and the sample standard deviation
(n - 1 in the denominator) over its completed jobs; a failed, diverged or unfinished job is
counted in the group's jobs but not in the mean. The standard deviation of a single value is
undefined: the table shows it as "—", the CSV leaves its `_std` cell empty.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genlab.report_reference import Published, csv_row
from genlab.report_table import Table, best_first, best_of, format_value

if TYPE_CHECKING:
    from genlab.report import Job

# overrides that leave a job the same experiment: its seed, and the checkpoint a resumed
# job started from
NOT_SETTINGS = ("seed", "ckpt_path")


@dataclass(frozen=True)
class Stat:
    mean: float  # NaN when there is no value
    std: float | None  # None for fewer than two values
    count: int

    def cell(self, expected: int) -> str:
        """`mean ± std`, with the count when fewer than the `expected` jobs had a value."""
        if self.count == 0:
            return "-"
        std = "—" if self.std is None else format_value(self.std)
        shown = f"{format_value(self.mean)} ± {std}"
        return shown if self.count == expected else f"{shown} (n={self.count})"


def stat(values: list[float | None]) -> Stat:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Stat(math.nan, None, 0)
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Stat(statistics.fmean(finite), std, len(finite))


def seed_order(seed: str) -> tuple:
    number = int(seed) if seed.lstrip("-").isdigit() else 0
    return (not seed.lstrip("-").isdigit(), number, seed)


@dataclass
class Group:
    settings: dict[str, str]  # the overrides its jobs share (all but NOT_SETTINGS)
    jobs: list[Job]

    @property
    def completed(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "completed"]

    def stat(self, metric: str) -> Stat:
        return stat([job.metrics.get(metric) for job in self.completed])

    def duration(self) -> Stat:
        return stat([job.duration_s for job in self.completed])

    @property
    def name(self) -> str:
        seeds = sorted((job.overrides.get("seed", "default") for job in self.jobs), key=seed_order)
        return "seed=" + ",".join(seeds)

    def count(self) -> str:
        """How many of its jobs the mean is over: `3`, or `4 of 5` when one did not complete."""
        done, ran = len(self.completed), len(self.jobs)
        return str(done) if done == ran else f"{done} of {ran}"


def seed_groups(jobs: list[Job]) -> list[Group]:
    """The jobs grouped by their overrides other than the seed; none when no two jobs differ
    only in their seed (the report then shows one row per job)."""
    groups: dict[tuple, Group] = {}
    for job in jobs:
        settings = {k: v for k, v in job.overrides.items() if k not in NOT_SETTINGS}
        key = tuple(sorted(settings.items()))
        groups.setdefault(key, Group(settings, [])).jobs.append(job)
    if all(len(group.jobs) == 1 for group in groups.values()):
        return []
    return list(groups.values())


def sort_groups(groups: list[Group], metric: str | None) -> list[Group]:
    """Best mean of `metric` first; groups without one last."""
    return sorted(
        groups, key=lambda g: best_first(g.stat(metric).mean if metric else None, metric, g.name)
    )


def group_table(groups: list[Group], params: list[str], metrics: list[str]) -> Table:
    # the best mean of each metric, where there are groups to compare
    best = {m: best_of([g.stat(m).mean for g in groups], m) for m in metrics}
    best = best if len(groups) > 1 else {}
    header = ["group", "n", *params, *metrics, "time_s"]
    rows, marks = [], []
    for group in groups:
        stats = [group.stat(m) for m in metrics]
        done = len(group.completed)
        rows.append(
            [group.name, group.count(), *(group.settings.get(p, "") for p in params),
             *(s.cell(done) for s in stats), group.duration().cell(done)]
        )  # fmt: skip
        marks.append(
            [False] * (2 + len(params))
            + [s.count > 0 and s.mean == best.get(m) for m, s in zip(metrics, stats, strict=True)]
            + [False]
        )
    legend = [
        "each row: jobs that differ only in seed; metrics and time_s are the mean ± sample "
        "standard deviation (n-1) over its completed jobs, — for a single one",
        "n: the completed jobs the mean is over; 4 of 5: five jobs ran, one did not complete",
    ]
    return Table(header, rows, marks, legend)


def write_group_csv(
    path: Path, groups: list[Group], params: list[str], metrics: list[str],
    published: list[Published],
) -> None:  # fmt: skip
    """One row per group: each metric's mean in `<metric>` and standard deviation in
    `<metric>_std`, `n` completed jobs of `jobs`; then the published rows."""
    stds = [f"{m}_std" for m in metrics]
    header = ["group", "n", "jobs", *params,
              *(c for pair in zip(metrics, stds, strict=True) for c in pair),
              "duration_s", "duration_s_std"]  # fmt: skip
    header += ["source"] if published else []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for group in groups:
            cells = [group.name, len(group.completed), len(group.jobs)]
            cells += [group.settings.get(p, "") for p in params]
            for s in [*(group.stat(m) for m in metrics), group.duration()]:
                cells += [s.mean if s.count else "", "" if s.std is None else s.std]
            writer.writerow(cells + (["genlab"] if published else []))
        writer.writerows(csv_row(row, header) for row in published)
