"""Published results beside a sweep's own: a recipe's top-level `reference:` block.

    reference:
      source: "PacGAN (Lin et al. 2018), Table 1"
      rows:
        - {name: "GAN", modes: 6.3, hq: 0.982, reverse_kl: 0.45}
        - {name: "PacGAN4", modes: 8.0, hq: 0.959, reverse_kl: 0.07}

genlab-report reads it from each job's recorded config and shows its rows labelled
`published: <name>`, with a `source` column, in the table, report.md and report.csv, and as
dashed lines in the metric figures; they are never marked best. A row's keys are metric
names as in metrics.json, with or without the `eval/` prefix: `modes` is the report's
column `eval/modes` (or the one column whose name ends in `/modes`); a metric the sweep did
not measure gets a column of its own under the name given. A value may be null (a cell the
paper left empty).
"""

import json
from dataclasses import dataclass, replace
from typing import Any

from genlab.errors import require
from genlab.report_table import Table, format_value

EXAMPLE = 'reference: {source: "<paper>, Table 1", rows: [{name: GAN, modes: 6.3}]}'


@dataclass(frozen=True)
class Published:
    source: str
    name: str
    values: dict[str, float | None]  # by metric: as the recipe wrote it, then by column

    @property
    def label(self) -> str:
        return f"published: {self.name}"

    def value(self, column: str) -> float | None:
        return self.values.get(column)


def kind(value: Any) -> str:
    return type(value).__name__.replace("dict", "mapping").replace("NoneType", "null")


def check_reference(reference: Any, where: str) -> None:
    """A `reference:` block as genlab-report reads it, or one line naming the fix."""
    fix = f"; fix the recipe's reference block (recorded in {where}), e.g. {EXAMPLE}"

    def check(condition: bool, problem: str) -> None:
        require(condition, problem + fix)

    check(isinstance(reference, dict), f"reference must be a mapping (got {kind(reference)})")
    for key in sorted(set(reference) - {"source", "rows"}):
        check(False, f"reference.{key} is not known: reference takes source and rows")
    source = reference.get("source")
    check(
        isinstance(source, str) and bool(source.strip()),
        f"reference.source must name where the rows come from (got {source!r})",
    )
    rows = reference.get("rows")
    check(
        isinstance(rows, list) and bool(rows),
        f"reference.rows must be a list of rows (got {kind(rows)})",
    )
    for i, row in enumerate(rows):
        check(
            isinstance(row, dict) and "name" in row,
            f"reference.rows[{i}] must be a mapping with a name (got {row!r})",
        )
        for key, value in row.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            check(
                key == "name" or number or value is None,
                f"reference.rows[{i}].{key} must be a number or null (got {value!r})",
            )


def published_rows(configs: list[tuple[str, dict]]) -> list[Published]:
    """The rows of every distinct `reference:` block in the jobs' configs (`(where, config)`),
    in the order first seen; each block checked."""
    seen, rows = set(), []
    for where, config in configs:
        reference = config.get("reference")
        if reference is None:
            continue
        check_reference(reference, where)
        key = json.dumps(reference, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        for row in reference["rows"]:
            values = {k: None if v is None else float(v) for k, v in row.items() if k != "name"}
            rows.append(Published(reference["source"], str(row["name"]), values))
    return rows


def metric_column(key: str, columns: list[str]) -> str:
    """The report's column for a published metric: the same name, `eval/<key>`, or the one
    column ending in `/<key>`; else the key itself (a column of its own)."""
    if key in columns:
        return key
    if f"eval/{key}" in columns:
        return f"eval/{key}"
    ending = [c for c in columns if c.endswith(f"/{key}")]
    return ending[0] if len(ending) == 1 else key


def published_columns(published: list[Published], columns: list[str]) -> list[str]:
    """The published metrics that no column of the sweep's holds."""
    extra = [metric_column(k, columns) for row in published for k in row.values]
    return [c for c in dict.fromkeys(extra) if c not in columns]


def on_columns(published: list[Published], columns: list[str]) -> list[Published]:
    """The rows with their values under the report's columns (`metric_column`)."""
    return [
        replace(row, values={metric_column(k, columns): v for k, v in row.values.items()})
        for row in published
    ]


def add_published(table: Table, published: list[Published], metrics: list[str]) -> None:
    """A `source` column (genlab for the sweep's rows) and the published rows, which hold no
    best value."""
    if not published:
        return
    table.add_column("source", ["genlab"] * len(table.rows))
    for row in published:
        cells = [format_value(row.value(h)) if h in metrics else "" for h in table.header]
        cells[0], cells[1], cells[-1] = row.label, "published", row.source
        table.add_row(cells)
    sources = ", ".join(dict.fromkeys(row.source for row in published))
    table.legend.append(f"published: results quoted from {sources}; never marked best")


def csv_row(row: Published, header: list[str]) -> list:
    """A published row under a CSV header: its label, `published` as status, its metrics."""
    cells = {"source": row.source, "status": "published"}
    values = [cells.get(h, row.value(h)) for h in header]
    return [row.label] + ["" if v is None else v for v in values[1:]]
