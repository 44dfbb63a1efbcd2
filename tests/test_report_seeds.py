"""genlab-report over seeds: jobs that differ only in `seed` as one row (mean ± sample
standard deviation over the completed jobs), and a recipe's published `reference:` rows."""

import csv
import json
import math
import re
import time
from pathlib import Path

import matplotlib.axes
import pytest
import yaml

from genlab.report import main, report

from helpers import cli

SOURCE = "PacGAN (Lin et al. 2018), Table 1"
REFERENCE = {
    "source": SOURCE,
    "rows": [
        {"name": "GAN", "fd": 0.01, "eval/recall": 0.99, "reverse_kl": 0.45},
        {"name": "PacGAN4", "fd": None, "reverse_kl": 0.07},
    ],
}


def write_job(
    sweep: Path, name: str, overrides: list[str], metrics: dict | None,
    status: str = "completed", duration: float = 10.0, reference: dict | None = None,
) -> None:  # fmt: skip
    """A hand-made job folder: its overrides and config, and metrics.json unless `metrics`
    is None (a job still running or killed)."""
    record = sweep / name / ".hydra"
    record.mkdir(parents=True)
    (record / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"optimized_metric": "eval/fd", "reference": reference}
    (record / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        record = {"status": status, "metrics": metrics, "duration_s": duration}
        (sweep / name / "metrics.json").write_text(json.dumps(record))
    (sweep / "multirun.yaml").write_text("{}")


def seed_sweep(sweep: Path, runs: dict[str, tuple], reference: dict | None = None) -> Path:
    """Jobs named `<i>_<overrides>` from {overrides: (fd, recall, duration) or None}."""
    for i, (overrides, values) in enumerate(runs.items()):
        metrics = values and {"eval/fd": values[0], "eval/recall": values[1]}
        duration = values[2] if values else 0.0
        write_job(sweep, f"{i}_{overrides}", overrides.split(","), metrics,
                  duration=duration, reference=reference)  # fmt: skip
    return sweep


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


@pytest.fixture
def plotted(monkeypatch) -> dict[str, list]:
    """What the report hands matplotlib: each errorbar's x, y and yerr, each axhline's y."""
    calls: dict[str, list] = {"errorbar": [], "axhline": []}
    errorbar, axhline = matplotlib.axes.Axes.errorbar, matplotlib.axes.Axes.axhline

    def record_errorbar(ax, x, y, *args, yerr=None, **kwargs):
        calls["errorbar"].append((ax.get_title(), list(x), list(y), list(yerr)))
        return errorbar(ax, x, y, *args, yerr=yerr, **kwargs)

    def record_axhline(ax, y=0, *args, **kwargs):
        calls["axhline"].append((kwargs.get("label"), y))
        return axhline(ax, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", record_errorbar)
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", record_axhline)
    return calls


def test_jobs_differing_only_in_seed_are_one_row_of_mean_and_std(tmp_path, capsys, plotted):
    sweep = seed_sweep(
        tmp_path / "sweep",
        {"seed=0": (0.1, 0.5, 10.0), "seed=1": (0.2, 0.7, 12.0), "seed=2": (0.6, 0.9, 14.0)},
    )
    main([str(sweep)])
    out = capsys.readouterr().out
    # mean 0.3; sample std sqrt((0.2² + 0.1² + 0.3²) / 2) = sqrt(0.07) = 0.2646
    # (one group: no best to mark)
    assert re.search(r"\nseed=0,1,2 +3 +0\.3 ± 0\.2646 +0\.7 ± 0\.2 +12 ± 2\n", out), out
    (row,) = read_csv(sweep / "report.csv")
    assert row["group"] == "seed=0,1,2" and (row["n"], row["jobs"]) == ("3", "3")
    assert float(row["eval/fd"]) == pytest.approx(0.3)
    assert float(row["eval/fd_std"]) == pytest.approx(math.sqrt(0.07))
    assert float(row["eval/recall_std"]) == pytest.approx(0.2)
    assert (float(row["duration_s"]), float(row["duration_s_std"])) == pytest.approx((12, 2))
    # nothing is lost: every job in report_jobs.csv and in report.md's second table
    jobs = read_csv(sweep / "report_jobs.csv")
    assert [j["job"] for j in jobs] == ["0_seed=0", "1_seed=1", "2_seed=2"]
    text = (sweep / "report.md").read_text()
    assert "| 0.3 ± 0.2646 |" in text and "## Jobs" in text and "| 2_seed=2 |" in text
    # one point with its standard deviation as the error bar
    assert (sweep / "report_metrics.png").stat().st_size > 5000
    fd = [call for call in plotted["errorbar"] if call[0] == "eval/fd"]
    assert [c[1:] for c in fd] == [([0], [pytest.approx(0.3)], [pytest.approx(math.sqrt(0.07))])]


def test_a_sweep_over_lr_and_seed_has_one_row_per_lr(tmp_path, plotted):
    runs = {}
    for seed, (fd, recall) in enumerate([(0.1, 0.2), (0.3, 0.4), (0.5, 0.6)]):
        runs[f"model.lr=1e-4,seed={seed}"] = (fd, recall, 5.0)
        runs[f"model.lr=2e-4,seed={seed}"] = (fd + 1, recall + 0.1, 7.0)
    sweep = seed_sweep(tmp_path / "sweep", runs)
    _, table, written = report(sweep)
    assert table.header == ["group", "n", "model.lr", "eval/fd", "eval/recall", "time_s"]
    assert [row[:3] for row in table.rows] == [["seed=0,1,2", "3", "1e-4"],
                                               ["seed=0,1,2", "3", "2e-4"]]  # fmt: skip
    assert [row[3] for row in table.rows] == ["0.3 ± 0.2", "1.3 ± 0.2"]
    assert [row[5] for row in table.rows] == ["5 ± 0", "7 ± 0"]
    fd, recall = 3, 4
    assert table.best[0][fd] and not table.best[1][fd]  # lower mean fd
    assert table.best[1][recall] and not table.best[0][recall]  # higher mean recall
    assert sweep / "report_model.lr.png" in written and sweep / "report_seed.png" not in written
    lines = [c[1:] for c in plotted["errorbar"] if c[0] == "eval/fd"]
    assert lines == [([1e-4, 2e-4], [pytest.approx(0.3), pytest.approx(1.3)],
                      [pytest.approx(0.2), pytest.approx(0.2)])]  # fmt: skip


def test_a_failed_job_is_left_out_of_its_groups_mean(tmp_path):
    sweep = seed_sweep(
        tmp_path / "sweep",
        {f"model.lr=1,seed={s}": (0.1 * (s + 1), 0.5, 10.0) for s in range(3)}
        | {"model.lr=1,seed=3": None, "model.lr=2,seed=0": (0.9, 0.1, 3.0)},
    )
    write_job(sweep, "5_model.lr=1,seed=4", ["model.lr=1", "seed=4"], {"eval/fd": 99.0},
              status="diverged")  # fmt: skip
    _, table, _ = report(sweep)
    rows = {row[2]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    assert rows["1"]["n"] == "3 of 5" and rows["1"]["group"] == "seed=0,1,2,3,4"
    assert rows["1"]["eval/fd"] == "0.2 ± 0.1"  # 0.1, 0.2, 0.3: not the diverged 99
    assert rows["2"]["n"] == "1" and rows["2"]["eval/fd"] == "0.9 ± —"  # one value: no std
    text = (sweep / "report.md").read_text()
    assert "n: the completed jobs the mean is over; 4 of 5: five jobs ran, one did not" in text
    csv_rows = {row["model.lr"]: row for row in read_csv(sweep / "report.csv")}
    assert (csv_rows["1"]["n"], csv_rows["1"]["jobs"]) == ("3", "5")
    assert csv_rows["2"]["eval/fd_std"] == ""
    statuses = {j["job"]: j["status"] for j in read_csv(sweep / "report_jobs.csv")}
    assert (
        statuses["5_model.lr=1,seed=4"] == "diverged"
        and statuses["3_model.lr=1,seed=3"] == "missing"
    )


@pytest.mark.parametrize("grouped", [True, False], ids=["seed groups", "jobs"])
def test_published_rows_are_shown_and_never_best(tmp_path, plotted, grouped):
    seeds = ("0,1", "2,3") if grouped else ("0", "1")
    runs = {f"model.lr={lr},seed={seed}": (0.1 * lr, 0.5, 1.0)
            for lr in (1, 2) for seed in seeds[lr - 1].split(",")}  # fmt: skip
    sweep = seed_sweep(tmp_path / "sweep", runs, reference=REFERENCE)
    _, table, written = report(sweep)
    # a published metric the sweep did not measure has a column of its own; then the source
    assert "reverse_kl" in table.header and table.header[-1] == "source"
    published = [dict(zip(table.header, row, strict=True)) for row in table.rows[-2:]]
    assert [p[table.header[0]] for p in published] == ["published: GAN", "published: PacGAN4"]
    assert published[0]["eval/fd"] == "0.01" and published[1]["eval/fd"] == "-"
    assert published[0]["source"] == SOURCE and table.rows[0][-1] == "genlab"
    assert not any(table.best[-1]) and not any(table.best[-2])  # better fd, yet not best
    fd = table.header.index("eval/fd")
    assert table.best[0][fd]
    text = (sweep / "report.md").read_text()
    assert "| published: GAN | published |" in text and SOURCE in text
    assert "**0.01" not in text
    rows = {row[table.header[0]]: row for row in read_csv(sweep / "report.csv")}
    assert rows["published: GAN"]["source"] == SOURCE
    assert float(rows["published: GAN"]["eval/fd"]) == 0.01
    assert float(rows["published: PacGAN4"]["reverse_kl"]) == 0.07
    assert ("published: GAN", 0.01) in plotted["axhline"]
    assert ("published: PacGAN4", 0.07) in plotted["axhline"]
    assert (sweep / "report_model.lr.png").stat().st_size > 5000 and written


BAD_REFERENCES = {
    "a list": (["PacGAN"], "reference must be a mapping (got list)"),
    "no source": ({"rows": [{"name": "GAN"}]}, "reference.source must name where the rows"),
    "rows not a list": ({"source": "x", "rows": {"name": "GAN"}},
                        "reference.rows must be a list of rows (got mapping)"),
    "a row without a name": ({"source": "x", "rows": [{"fd": 1.0}]},
                             "reference.rows[0] must be a mapping with a name"),
    "a word for a value": ({"source": "x", "rows": [{"name": "GAN", "fd": "low"}]},
                           "reference.rows[0].fd must be a number or null (got 'low')"),
    "an unknown key": ({"source": "x", "rows": [{"name": "GAN"}], "table": 1},
                       "reference.table is not known: reference takes source and rows"),
}  # fmt: skip


@pytest.mark.parametrize(("reference", "message"), BAD_REFERENCES.values(), ids=BAD_REFERENCES)
def test_a_malformed_reference_is_a_one_line_error(tmp_path, capsys, reference, message):
    sweep = seed_sweep(tmp_path / "sweep", {"seed=0": (0.1, 0.2, 1.0), "seed=1": (0.3, 0.4, 1.0)})
    (sweep / "1_seed=1" / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"reference": reference})
    )
    with pytest.raises(SystemExit) as stopped:
        main([str(sweep)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"genlab-report: error: {message}")
    assert "fix the recipe's reference block (recorded in " in err and "1_seed=1" in err
    assert not list(sweep.glob("report*"))


def test_a_seed_sweep_with_a_reference_end_to_end(tmp_path):
    """genlab-train -m seed=0,1 with `reference=` on the command line: it passes the config
    checks, each job records it, and the sweep's report groups the two seeds beside it."""
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    result = cli(
        "genlab-train", "-m", "seed=0,1", "debug=fdr", "logger=none",
        "callbacks.sample_quality.num_samples=200",
        f"reference={{source: '{SOURCE}', rows: [{{name: GAN, fd: 0.5}}]}}",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 60
    for job in ("0_seed=0", "1_seed=1"):
        config = yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())
        assert config["reference"] == {"source": SOURCE, "rows": [{"name": "GAN", "fd": 0.5}]}
    rows = read_csv(sweep / "report.csv")
    assert [(r["group"], r["n"], r["source"]) for r in rows] == [
        ("seed=0,1", "2", "genlab"), ("published: GAN", "", SOURCE)
    ]  # fmt: skip
    assert float(rows[0]["eval/fd_std"]) >= 0
    assert "published: GAN" in result.stdout
