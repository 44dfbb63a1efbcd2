"""genlab-report's table: which metrics are better larger, how a value is written, and the
table itself as aligned text (best values starred) and Markdown (best values bold)."""

import math
from dataclasses import dataclass, field

# Metrics where larger is better; every other metric is better smaller (fd, nll, losses, ...).
MAXIMIZED = {
    "precision", "recall", "density", "coverage", "modes", "hq", "class_entropy",
    "cond_acc", "real_acc", "elbo", "iwae", "replicas_in_sync", "psnr", "label_kept",
}  # fmt: skip
BEST_MARK = "*"


def maximized(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1]
    return name in MAXIMIZED or name.startswith("iwae_k")


def format_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def best_of(values: list[float], metric: str) -> float | None:
    """The best of the finite `values` of `metric`, or None when there is none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if maximized(metric) else min(finite)


def best_first(value: float | None, metric: str | None, name: str) -> tuple:
    """A sort key: the best `value` of `metric` first, rows without a finite one last, ties
    by `name`."""
    if metric is None or value is None or not math.isfinite(value):
        return (1, 0.0, name)
    return (0, -value if maximized(metric) else value, name)


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]]
    legend: list[str] = field(default_factory=list)  # what the table's marks and cells mean

    def add_column(self, name: str, cells: list[str]) -> None:
        self.header.append(name)
        for row, best, cell in zip(self.rows, self.best, cells, strict=True):
            row.append(cell)
            best.append(False)

    def add_row(self, cells: list[str]) -> None:
        """A row that never holds a best value (a published result)."""
        self.rows.append(cells)
        self.best.append([False] * len(cells))

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
