"""Sweeps: multirun job folders, genlab-report, the Optuna sweeper and the parallel launchers."""

import csv
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genlab.attempts import latest_record
from genlab.errors import GenlabError
from genlab.report import find_sweep, main, report
from genlab.sweeps import job_name

from helpers import BIN, cli, one_line_error, tb_run

TINY = [
    "trainer.enable_progress_bar=false",
    "trainer.limit_train_batches=4",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_quality.num_samples=200",
    "callbacks.sample_plots.num_samples=200",
]


def jobs_of(sweep: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """The seed's 2 x 2 grid of lr and batch size, a few batches per job: (folder, sweep, result)."""
    tmp_path = tmp_path_factory.mktemp("sweep2x2")
    sweep = tmp_path / "sweep"
    result = cli(
        "genlab-train", "-m", "model.lr=1e-4,1e-3", "data.batch_size=50,250", *TINY,
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, sweep, result


def test_a_2x2_sweep_reports_every_job(finished_sweep):
    tmp_path, sweep, result = finished_sweep
    jobs = jobs_of(sweep)
    names = sorted(job.name for job in jobs)
    assert names == [
        "0_data.batch_size=50,model.lr=0.0001",
        "1_data.batch_size=250,model.lr=0.0001",
        "2_data.batch_size=50,model.lr=0.001",
        "3_data.batch_size=250,model.lr=0.001",
    ]
    # the multirun ends with the report (a Hydra callback)
    assert f"Sweep: {sweep}" in result.stdout
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert len(rows) == 4
    assert {"job", "status", "data.batch_size", "model.lr", "eval/fd", "eval/precision"} <= set(
        rows[0]
    )
    assert all(row["status"] == "completed" for row in rows)
    fds = [float(row["eval/fd"]) for row in rows]
    assert fds == sorted(fds)  # sorted by optimized_metric (eval/fd, lower is better)
    table = (sweep / "report.md").read_text()
    assert table.count("\n| ") == 5  # header + 4 jobs
    assert f"**{rows[0]['eval/fd'][:4]}" in table  # the best fd is bold
    for png in ("report_model.lr.png", "report_data.batch_size.png", "report_losses.png",
                "report_samples.png"):  # fmt: skip
        assert (sweep / png).stat().st_size > 5000, png
    # each job: its config, its machine record, and a TensorBoard run with hparams
    for job in jobs:
        info = json.loads((job / "run_info.json").read_text())
        assert info["versions"]["torch"] and "dirty" in info["git"]
        (event_file,) = tb_run(job).glob("events.out.tfevents.*")
        tags = EventAccumulator(str(event_file)).Reload().Tags()
        assert "loss/d" in tags["scalars"] and "samples/scatter" in tags["images"]

    # genlab-report on the parent folder finds the newest sweep and prints the same table
    again = cli("genlab-report", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"Sweep: {sweep}" in again.stdout
    assert again.stdout.count("completed") == 4

    # rerunning into the same folder records nothing over the finished jobs
    rerun = cli(
        "genlab-train", "-m", "model.lr=1e-4", "data.batch_size=50", *TINY,
        f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir='0_data.batch_size=50,model.lr=0.0001'",
        cwd=tmp_path,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    kept = json.loads((jobs[0] / "metrics.json").read_text())
    assert kept["status"] == "completed"
    assert "already holds a run" in rerun.stderr  # said on the console, not in the job's log
    assert "already holds" not in (jobs[0] / "train.log").read_text()


def test_a_failed_job_is_reported_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(
        "genlab-train", "-m", "model.lr=-1,1e-3", *TINY, "logger=none",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    _, table, _ = report(sweep)
    statuses = {row[2]: row[1] for row in table.rows}
    assert statuses == {"-1": "failed", "0.001": "completed"}
    assert table.rows[-1][1] == "failed"  # failures sort last
    text = (sweep / "report.md").read_text()
    assert "failed: model.lr must be > 0" in text


def write_job(
    folder: Path, overrides: list[str], metrics: dict | None = None, record: str = ".hydra"
) -> Path:
    """A hand-made run folder: its record's overrides.yaml (in `record`, e.g.
    `.hydra/attempt-2` for a resume), and a completed metrics.json unless `metrics` is None
    (a job still running or killed)."""
    (folder / record).mkdir(parents=True, exist_ok=True)
    (folder / record / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(
            json.dumps({"status": "completed", "metrics": metrics})
        )
    return folder


def write_sweep(sweep: Path, jobs: dict[str, tuple[list[str], dict | None]]) -> Path:
    """A hand-made sweep folder: multirun.yaml and one job folder per entry."""
    for name, (overrides, metrics) in jobs.items():
        write_job(sweep / name, overrides, metrics)
    (sweep / "multirun.yaml").write_text("{}")
    return sweep


def test_report_marks_best_values_and_missing_jobs(tmp_path):
    """On a hand-made sweep folder: maximized and minimized metrics, a job still running."""
    sweep = tmp_path / "sweep"
    values = {"0_model.lr=1": (0.5, 0.9), "1_model.lr=2": (0.2, 0.7), "2_model.lr=3": None}
    write_sweep(
        sweep,
        {
            name: (
                [f"model.lr={name.split('=')[1]}"],
                metrics and dict(zip(["eval/fd", "eval/recall"], metrics, strict=True)),
            )
            for name, metrics in values.items()
        },
    )
    _, table, written = report(tmp_path, metric="eval/fd")
    assert [row[0] for row in table.rows] == ["1_model.lr=2", "0_model.lr=1", "2_model.lr=3"]
    assert table.rows[2][1] == "missing"
    header = table.header
    fd, recall = header.index("eval/fd"), header.index("eval/recall")
    assert table.best[0][fd] and not table.best[0][recall]  # lower fd is better
    assert table.best[1][recall] and not table.best[1][fd]  # higher recall is better
    assert (sweep / "report_model.lr.png").is_file()
    assert sweep / "report.csv" in written


NOT_A_SWEEP = "is not a sweep folder (no multirun.yaml) and holds no sweep; pass the folder a -m"


def test_report_without_a_sweep_is_a_one_line_error(tmp_path):
    with pytest.raises(GenlabError, match=r"is not a sweep folder \(no multirun.yaml\)"):
        find_sweep(tmp_path)
    result = cli("genlab-report", str(tmp_path), cwd=tmp_path)
    assert one_line_error(result).startswith(f"genlab-report: error: {tmp_path} {NOT_A_SWEEP}")


def report_exit(path: Path, capsys) -> tuple[int, str]:
    """`genlab-report PATH` in this process, expected to stop: its exit status and stderr."""
    with pytest.raises(SystemExit) as stopped:
        main([str(path)])
    return stopped.value.code, capsys.readouterr().err


def test_a_folder_of_single_runs_is_refused_and_nothing_is_written(tmp_path, capsys):
    """Single runs placed directly under outputs/ are not the jobs of one sweep."""
    outputs = tmp_path / "outputs"
    write_job(outputs / "moons", ["model.lr=1e-3"], {"eval/fd": 0.1})
    write_job(outputs / "ring", ["model=wgan_gp", "data=ring"], {"eval/fd": 0.2})
    write_job(outputs / "resumed", ["model.lr=1e-3", "ckpt_path=last"], {"eval/fd": 0.3})
    for folder in (outputs, outputs / "moons"):  # the folder of runs, and one run's folder
        status, err = report_exit(folder, capsys)
        assert status == 2
        assert err.startswith(f"genlab-report: error: {folder} {NOT_A_SWEEP} run printed, e.g. ")
        assert err.endswith("outputs/multirun/<date>/<time>\n") and err.count("\n") == 1
    assert sorted(p.name for p in outputs.rglob("report*")) == []


def test_the_newest_sweep_below_a_folder_is_reported(tmp_path, capsys):
    outputs = tmp_path / "outputs"
    write_job(outputs / "single", ["model.lr=1"], {"eval/fd": 0.1})  # not a sweep's job
    older, newer = (
        write_sweep(
            outputs / "multirun" / "2026-11-22" / time,
            {f"{i}_model.lr={i}": ([f"model.lr={i}"], {"eval/fd": 1.0 + i}) for i in range(2)},
        )
        for time in ("10-00-00", "09-00-00")  # the folder names do not say which is newer
    )
    os.utime(older / "multirun.yaml", (1_000_000, 1_000_000))
    assert find_sweep(outputs) == newer
    assert find_sweep(older) == older  # a sweep folder itself
    main([str(outputs)])
    out = capsys.readouterr().out
    assert f"Sweep: {newer}" in out and out.count("completed") == 2
    assert (newer / "report.md").is_file() and not (older / "report.md").exists()
    assert not (outputs / "report.md").exists()


def test_a_job_with_an_extra_override_or_no_metrics_is_reported(tmp_path):
    """One job resumed with ckpt_path (which the others lack), one without metrics.json."""
    sweep = write_sweep(
        tmp_path / "sweep",
        {
            "0_model.lr=1": (["model.lr=1"], {"eval/fd": 0.5}),
            "1_model.lr=2": (["model.lr=2", "ckpt_path=last"], {"eval/fd": 0.2}),
            "2_model.lr=3": (["model.lr=3"], None),
        },
    )
    _, table, written = report(sweep, metric="eval/fd")
    header = table.header
    assert header[:4] == ["job", "status", "ckpt_path", "model.lr"]
    rows = {row[0]: row for row in table.rows}
    assert rows["1_model.lr=2"][1:4] == ["completed", "last", "2"]
    assert rows["0_model.lr=1"][1:4] == ["completed", "", "1"]
    assert rows["2_model.lr=3"][1] == "missing"
    assert {sweep / "report_ckpt_path.png", sweep / "report_model.lr.png"} <= set(written)


def test_the_latest_attempt_of_a_job_is_read(tmp_path):
    """A job resumed twice: its record in .hydra/attempt-10/ (not attempt-2, which sorts
    after it as text) holds the overrides and config that the report reads."""
    sweep = write_sweep(
        tmp_path / "sweep",
        {
            "0_seed=0": (["seed=0"], {"eval/fd": 0.1, "eval/recall": 0.2}),
            "1_seed=1": (["seed=1"], {"eval/fd": 0.3, "eval/recall": 0.4}),
        },
    )
    resumed = sweep / "1_seed=1"
    (resumed / ".hydra" / "config.yaml").write_text("optimized_metric: eval/fd\n")
    for attempt, epochs, metric in ((2, 20, "eval/fd"), (10, 40, "eval/recall")):
        record = f".hydra/attempt-{attempt}"
        write_job(
            resumed, ["seed=1", "ckpt_path=last", f"trainer.max_epochs={epochs}"], None, record
        )
        (resumed / record / "config.yaml").write_text(f"optimized_metric: {metric}\n")
    (resumed / ".hydra" / "attempt-11").mkdir()  # being written: no overrides.yaml yet
    assert latest_record(resumed) == resumed / ".hydra" / "attempt-10"
    assert latest_record(sweep / "0_seed=0") == sweep / "0_seed=0" / ".hydra"
    _, table, _ = report(sweep)
    rows = {row[0]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    assert rows["1_seed=1"]["trainer.max_epochs"] == "40"
    assert rows["1_seed=1"]["ckpt_path"] == "last"
    # sorted by the latest config's optimized_metric, eval/recall (higher is better)
    assert [row[0] for row in table.rows] == ["1_seed=1", "0_seed=0"]


def test_job_names_show_the_swept_values_and_are_folder_safe(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {"hydra": {"overrides": {"task": ["model.lr=1e-4,1e-3", "data.root=/a", "seed=range(3)"]},
                       "sweeper": {"params": {"data.batch_size": "50,250"}}}}
        )
    )  # fmt: skip
    job = ["model.lr=1e-4", "data.root=/a", "seed=2", "data.batch_size=50"]
    assert job_name(str(tmp_path), job) == "data.batch_size=50,model.lr=1e-4,seed=2"
    # no multirun.yaml: every override, made folder-safe
    assert job_name(str(tmp_path / "none"), ["data.root=/a/b"]) == "data.root=_a_b"
    long = job_name(str(tmp_path / "none"), ["x=" + "9" * 500])
    assert len(long) == 120 and long == job_name(str(tmp_path / "none"), ["x=" + "9" * 500])
    assert job_name(str(tmp_path / "none"), []) == "defaults"


def test_optuna_sweeper_runs_trials(tmp_path):
    sweep = tmp_path / "optuna"
    result = cli(
        "genlab-train", "-m", "sweep=optuna", "hydra.sweeper.n_trials=3", "debug=fdr",
        "callbacks.sample_quality.num_samples=200", "logger=none",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(jobs_of(sweep)) == 3
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and "model.lr" in best["best_params"]
    lrs = [float(r["model.lr"]) for r in csv.DictReader((sweep / "report.csv").open())]
    assert len(set(lrs)) == 3 and all(1e-5 <= lr <= 1e-2 for lr in lrs)


def launcher_sweep(tmp_path: Path, launcher: str, *overrides: str) -> list[dict]:
    """Two fast jobs (seeds 1 and 2) under a Hydra launcher; their metrics.json records."""
    sweep = tmp_path / "sweep"
    result = cli(
        "genlab-train", "-m", f"hydra/launcher={launcher}", *overrides, "seed=1,2", "debug=fdr",
        "logger=none", "callbacks.sample_quality.num_samples=200", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((job / "metrics.json").read_text()) for job in jobs_of(sweep)]
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    return records


def test_joblib_runs_jobs_in_parallel_with_a_share_of_the_threads(tmp_path):
    records = launcher_sweep(tmp_path, "joblib", "hydra.launcher.n_jobs=2")
    assert all(r["threads"] == max(1, (os.cpu_count() or 1) // 2) for r in records)


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    launcher_sweep(tmp_path, "submitit_local")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tensorboard_serves_every_job_of_a_sweep(finished_sweep):
    """A real TensorBoard server over the finished sweep, asked through its HTTP API."""
    _, sweep, _ = finished_sweep
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "tensorboard"), "--logdir", str(sweep), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/data"

    def get(path: str, request: dict | None = None):
        """GET a route; the hparams plugin takes its request as JSON in `?request=`."""
        query = "" if request is None else "?request=" + quote(json.dumps(request))
        with urllib.request.urlopen(f"{base}/{path}{query}", timeout=10) as response:
            return json.loads(response.read())

    jobs = [job.name for job in jobs_of(sweep)]
    # each run is called after its swept values, in its job's folder
    expected_runs = {f"{job}/tensorboard/{job.split('_', 1)[1]}" for job in jobs}
    try:
        deadline = time.monotonic() + 90
        runs: list[str] = []
        while time.monotonic() < deadline:
            try:
                runs = get("runs")
                if expected_runs <= set(runs):
                    break
            except OSError:
                pass  # not listening yet
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(0.5)
        # runs are told apart by their overrides, not by a number
        assert expected_runs <= set(runs), runs
        scalars = get("plugin/scalars/tags")
        images = get("plugin/images/tags")
        for run in expected_runs:
            assert {"loss/d", "loss/g", "eval/fd", "final/eval/fd"} <= set(scalars[run]), run
            assert "samples/scatter" in images[run], run
            points = get(f"plugin/scalars/scalars?run={quote(run)}&tag={quote('loss/d')}")
            assert points and all(len(point) == 3 for point in points)  # wall time, step, value
        experiment = get("plugin/hparams/experiment", {"experimentName": ""})
        hparam_names = [info["name"] for info in experiment["hparamInfos"]]
        # the columns runs are compared by come first (TensorBoard sorts them by name)
        assert hparam_names[:5] == ["Batch size", "Data", "LR", "Model", "Seed"], hparam_names
        assert {"model/lr", "data/batch_size"} <= set(hparam_names), hparam_names
        assert not any(name.startswith("choice/debug") for name in hparam_names)
        metric_tags = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert "final/eval/fd" in metric_tags, metric_tags
        groups = get(
            "plugin/hparams/session_groups",
            {"experimentName": "", "startIndex": 0, "sliceSize": 100,
             "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                 "STATUS_RUNNING"],
             "colParams": [{"metric": {"tag": "final/eval/fd"}},
                           {"hparam": "model/lr"}, {"hparam": "data/batch_size"}]},
        )["sessionGroups"]  # fmt: skip
        assert len(groups) == 4
        settings = {(g["hparams"]["model/lr"], g["hparams"]["data/batch_size"]) for g in groups}
        assert settings == {(0.0001, 50), (0.0001, 250), (0.001, 50), (0.001, 250)}
        for group in groups:
            (final_fd,) = [m for m in group["metricValues"] if m["name"]["tag"] == "final/eval/fd"]
            assert final_fd["value"] >= 0
    finally:
        server.terminate()
        server.wait(timeout=30)
