"""genlab-report's figures: each metric against each swept parameter (a seed group's
standard deviation as error bars, published results as dashed lines), the loss curves of
every job from TensorBoard's events, and the final samples side by side."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genlab.report_reference import Published
from genlab.report_table import maximized

if TYPE_CHECKING:
    from genlab.report import Job
    from genlab.report_groups import Group


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def setting(settings: dict[str, str], key: str) -> str:
    """A job's (or group's) value of an override; "default" where it is not overridden."""
    return settings.get(key, "default")


def value_order(value: str) -> tuple:
    """Numbers in increasing order, then words."""
    number = as_number(value)
    return (number is None, number or 0.0, value)


@dataclass
class Point:
    """A point of the metric figures: a completed job, or a seed group (the mean over its
    completed jobs, their standard deviation as the error bar)."""

    label: str
    settings: dict[str, str]
    means: dict[str, float]
    errors: dict[str, float] | None = None

    def at(self, param: str | None) -> str:
        """Where it lies on the x axis: its value of `param` (its label where there is none)."""
        return self.label if param is None else setting(self.settings, param)


def job_points(jobs: list[Job]) -> list[Point]:
    return [Point(j.name, j.overrides, j.metrics) for j in jobs if j.status == "completed"]


def group_points(groups: list[Group], metrics: list[str]) -> list[Point]:
    stats = [(group, {m: group.stat(m) for m in metrics}) for group in groups if group.completed]
    return [
        Point(group.name, group.settings, {m: s.mean for m, s in by_metric.items()},
              {m: s.std or 0.0 for m, s in by_metric.items()})
        for group, by_metric in stats
    ]  # fmt: skip


def plot_metrics(
    sweep: Path, points: list[Point], params: list[str], metrics: list[str],
    published: list[Published] = (),
) -> list[Path]:  # fmt: skip
    """One PNG per swept parameter: each metric against it, one line per setting of the other
    parameters, published results as dashed lines; with no parameter (a sweep of seeds
    alone), one PNG of the points side by side (report_metrics.png)."""
    from genlab.plotting import figure_to_array, save_png

    written = []
    for param in params or [None]:
        fig = metric_figure(points, param, params, metrics, published)
        name = "metrics" if param is None else param.replace("/", "_")
        written.append(save_png(figure_to_array(fig), sweep / f"report_{name}.png"))
    return written


def metric_figure(
    points: list[Point], param: str | None, params: list[str], metrics: list[str],
    published: list[Published],
):  # fmt: skip
    import matplotlib.pyplot as plt

    others = [p for p in params if p != param]
    cols = min(3, len(metrics)) or 1
    rows = max(1, math.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    values = [point.at(param) for point in points]
    numeric = param is not None and all(as_number(v) is not None for v in values)
    order = sorted(set(values), key=value_order)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        ax.set_title(metric + (" (higher is better)" if maximized(metric) else ""))
        draw_metric(ax, points, param, others, metric, order if not numeric else None)
        draw_published(ax, published, metric)
        if numeric and len(order) > 1:
            low, high = float(order[0]), float(order[-1])
            if low > 0 and high / low >= 10:
                ax.set_xscale("log")
        elif not numeric:
            ax.set_xticks(range(len(order)), order, rotation=20)
        ax.set_xlabel(param or "")
        if (others and ax is axes.flat[0]) or any(p.value(metric) is not None for p in published):
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def draw_metric(
    ax, points: list[Point], param: str | None, others: list[str], metric: str,
    order: list[str] | None,
) -> None:  # fmt: skip
    """One line per setting of the other parameters; x is the value of `param`, or its place
    in `order` where the values are not all numbers. A group's line has error bars."""
    lines: dict[str, list[Point]] = {}
    for point in points:
        label = ",".join(f"{p}={setting(point.settings, p)}" for p in others)
        lines.setdefault(label, []).append(point)
    for label, members in sorted(lines.items()):
        members = sorted(members, key=lambda point: value_order(point.at(param)))
        xs = [
            as_number(p.at(param)) if order is None else order.index(p.at(param)) for p in members
        ]
        ys = [p.means.get(metric, math.nan) for p in members]
        if all(p.errors is None for p in members):
            ax.plot(xs, ys, marker="o", label=label or None)
        else:
            errors = [(p.errors or {}).get(metric, 0.0) for p in members]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label or None)


def draw_published(ax, published: list[Published], metric: str) -> None:
    """Each published value of `metric` as a dashed horizontal line."""
    for i, row in enumerate(published):
        value = row.value(metric)
        if value is not None:
            style = ("--", ":", "-.")[i % 3]
            ax.axhline(value, color="0.3", linestyle=style, linewidth=1, label=row.label)


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
    return (
        ",".join(f"{p.rsplit('.', 1)[-1]}={setting(job.overrides, p)}" for p in params) or job.name
    )


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
