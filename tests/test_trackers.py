"""logger=mlflow and logger=wandb: short real runs through genlab-train, then each run read
back offline the way its tracker keeps it (MLflow through its own client, W&B from the run
file that `wandb sync` would upload): the settings, a loss at every step, the quality
metrics each epoch and the sample pictures, each against what the run itself recorded.

The trackers are optional extras (genlab[mlflow], genlab[wandb]) that `make install`
installs: without them these tests fail rather than skip."""

import json
import struct
from pathlib import Path

import pytest

from genlab.errors import ConfigError

from helpers import cli

STEPS = 8  # 2 epochs of 4 batches, a logging step after each
RUN = [
    "model=lsgan",
    "data.batch_size=128",
    "num_threads=1",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_quality.num_samples=200",
]


def train(tmp_path: Path, *overrides: str) -> None:
    """genlab-train with `overrides`, writing its runs to tmp_path/outputs as it would to
    outputs/."""
    result = cli(
        "genlab-train", *overrides, f"paths.log_dir={tmp_path / 'outputs'}", *RUN,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def final_metrics(run_folder: Path) -> dict[str, float]:
    record = json.loads((run_folder / "metrics.json").read_text())
    assert record["status"] == "completed"
    return record["metrics"]


def check_settings(params: dict[str, str], lr: float) -> None:
    """The run's settings as a tracker holds them, each value as text."""
    assert params["Model"] == "lsgan" and params["Data"] == "moons"
    assert float(params["LR"]) == lr
    assert float(params["model/lr_d"]) == float(params["model/lr_g"]) == lr  # they follow lr
    assert params["Batch size"] == params["data/batch_size"] == "128"
    assert params["trainer/max_epochs"] == "2"


def test_mlflow_holds_the_settings_losses_metrics_and_pictures(tmp_path):
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    train(tmp_path, "logger=mlflow", "model.lr=3e-4")
    (record,) = (tmp_path / "outputs").glob("*/*/metrics.json")  # outputs/<date>/<time>/
    run_folder = record.parent
    final = final_metrics(run_folder)
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("genlab")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_folder.name
    assert run.info.status == "FINISHED"

    # the settings, under names MLflow accepts (Hydra's `optimizer@model.optimizer_d` is not)
    params = run.data.params
    check_settings(params, lr=3e-4)
    assert not [k for k in params if "@" in k]
    assert [v for k, v in params.items() if k.endswith("optimizer_model.optimizer_d")] == ["adam"]

    # D's loss at every step; its last value is the one the run ended with
    history = client.get_metric_history(run.info.run_id, "loss/d")
    assert [m.step for m in history] == list(range(STEPS))
    assert history[-1].value == pytest.approx(final["loss/d"])
    assert len({m.value for m in history}) > 1  # a curve, not one number repeated
    # the quality metrics once an epoch, and the final ones
    fd = client.get_metric_history(run.info.run_id, "eval/fd")
    assert len(fd) == 2 and fd[-1].value == pytest.approx(final["eval/fd"])
    assert run.data.metrics["final/eval/recall"] == pytest.approx(final["eval/recall"])

    # the sample pictures: the same PNGs as in the run folder
    listed = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert listed == ["samples/scatter_000.png", "samples/scatter_001.png"]
    copy = download_artifacts(
        run_id=run.info.run_id, artifact_path="samples/scatter_001.png",
        dst_path=str(tmp_path / "download"), tracking_uri=uri,
    )  # fmt: skip
    assert Path(copy).read_bytes() == (run_folder / "samples" / "epoch_001.png").read_bytes()


# ---- the .wandb run file: a LevelDB-style log of W&B's protobuf records ------------------------

BLOCK, HEADER = 32768, 7  # records never straddle a block's header: a block is padded
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """The records of an offline run's `.wandb` file, in the order W&B wrote them."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def items(updates) -> dict:
    """A history row or config update as a dict: each key with its JSON value decoded (a
    picture comes as one value per field, under nested keys: it becomes a dict)."""
    tree: dict = {}
    for update in updates:
        *parents, last = update.nested_key or [update.key]
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = json.loads(update.value_json)
    return tree


def test_wandb_offline_runs_hold_the_settings_losses_metrics_and_pictures(tmp_path):
    """Two jobs of a sweep, in one process: each job's own W&B run, finished with it."""
    sweep = tmp_path / "sweep"
    train(tmp_path, "-m", "logger=wandb", "model.lr=3e-4,1e-3", f"hydra.sweep.dir={sweep}")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [job.name for job in jobs] == ["0_model.lr=0.0003", "1_model.lr=0.001"]
    for run_folder, lr in zip(jobs, (3e-4, 1e-3), strict=True):
        check_wandb_run(run_folder, lr)


def check_wandb_run(run_folder: Path, lr: float) -> None:
    final = final_metrics(run_folder)
    (offline_run,) = (run_folder / "wandb").glob("offline-run-*")
    (run_file,) = offline_run.glob("*.wandb")
    records = wandb_records(run_file)
    (run,) = [r.run for r in records if r.HasField("run")]
    # a sweep's job is called after its swept values
    assert run.project == "genlab" and run.display_name == run_folder.name.split("_", 1)[1]
    (exit_record,) = [r.exit for r in records if r.HasField("exit")]
    assert exit_record.exit_code == 0

    config: dict = {}
    for record in records:
        if record.HasField("config"):
            config |= items(record.config.update)
    check_settings({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, lr)

    # this job's losses only, one a step; its quality metrics once an epoch, then the final ones
    rows = [items(r.history.item) for r in records if r.HasField("history")]
    losses = [row for row in rows if "loss/d" in row]
    assert [row["trainer/global_step"] for row in losses] == list(range(STEPS))
    assert losses[-1]["loss/d"] == pytest.approx(final["loss/d"])
    fd = [row["eval/fd"] for row in rows if "eval/fd" in row]
    assert len(fd) == 2 and fd[-1] == pytest.approx(final["eval/fd"])
    (last_row,) = [row for row in rows if "final/eval/recall" in row]
    assert last_row["final/eval/recall"] == pytest.approx(final["eval/recall"])

    # the sample pictures, one an epoch, captioned with it: the PNGs of the run folder
    pictures = [row["samples/scatter"] for row in rows if "samples/scatter" in row]
    assert [p["captions"] for p in pictures] == [["epoch 0"], ["epoch 1"]]
    for epoch, picture in enumerate(pictures):
        assert picture["_type"] == "images/separated" and picture["format"] == "png"
        (image,) = picture["filenames"]
        written = (offline_run / "files" / image).read_bytes()
        assert written == (run_folder / "samples" / f"epoch_{epoch:03d}.png").read_bytes()


def test_a_tracker_without_its_package_is_a_one_line_hint(tmp_path, monkeypatch):
    from genlab import build

    from helpers import compose_train

    found = build.importlib.util.find_spec
    monkeypatch.setattr(
        build.importlib.util, "find_spec", lambda name: None if name == "wandb" else found(name)
    )
    cfg = compose_train(["logger=wandb"], tmp_path)
    with pytest.raises(ConfigError, match=r"logger=wandb needs the wandb package: pip install"):
        build.loggers(cfg)
