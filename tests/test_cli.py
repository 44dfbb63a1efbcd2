"""The console scripts as a user runs them: DDP, multirun, sampling, one-line errors."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from helpers import SHORT, cli, cli_in_process, one_line_error, short_run, tb_run


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("metrics.json"))


def test_ddp_cpu_two_processes_one_folder_identical_weights(tmp_path):
    dump = tmp_path / "weights"
    result = cli(
        "genlab-train",
        "hardware=ddp_cpu",
        "data=ring",
        *SHORT,
        f"paths.log_dir={tmp_path / 'outputs'}",
        "+callbacks.dump._target_=helpers.DumpGeneratorWeights",
        f"+callbacks.dump.dirpath={dump}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_dirs(tmp_path / "outputs")
    assert len(runs) == 1, runs  # one run folder, not one per process
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["metrics"]["ddp/replicas_in_sync"] == 1.0
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    # only rank 0 wrote TensorBoard events, into a single file
    assert len(list(tb_run(runs[0]).glob("events.out.tfevents.*"))) == 1


def sweep(tmp_path, *overrides: str) -> Path:
    """Run `genlab-train -m OVERRIDES` into tmp_path/sweep; check it made jobs 0 and 1."""
    folder = tmp_path / "sweep"
    result = cli("genlab-train", "-m", *overrides, f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert jobs == ["0_model.lr=0.0001", "1_model.lr=0.001"]  # named by the swept values
    return folder


def test_multirun_writes_one_folder_per_job(tmp_path):
    folder = sweep(tmp_path, "model.lr=1e-4,1e-3", "debug=fdr")
    for job, lr in (("0_model.lr=0.0001", 1e-4), ("1_model.lr=0.001", 1e-3)):
        assert json.loads((folder / job / "metrics.json").read_text())["status"] == "completed"
        config = yaml.safe_load((folder / job / ".hydra" / "config.yaml").read_text())
        assert float(config["model"]["lr"]) == lr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short conditional run on the ring, for the sampling and checkpoint tests."""
    return short_run(
        tmp_path_factory.mktemp("trained"), "data=ring", "model.num_classes=${data.num_classes}"
    )


def test_sample_writes_points_and_labels(trained, tmp_path):
    out = tmp_path / "samples"
    result = cli(
        "genlab-sample",
        f"ckpt={trained / 'checkpoints' / 'last.ckpt'}",
        "n=100",
        f"out={out}",
        "labels=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    saved = torch.load(out / "samples.pt")
    assert saved["samples"].shape == (100, 2) and saved["samples"].dtype == torch.float32
    assert saved["labels"].tolist() == [3] * 100
    assert (out / "samples.png").stat().st_size > 5_000

    result = cli_in_process(
        "genlab-sample",
        f"ckpt={trained / 'checkpoints' / 'last.ckpt'}",
        "n=16",
        f"out={out}",
        cwd=tmp_path,
    )
    assert torch.load(out / "samples.pt")["labels"].tolist() == [i % 8 for i in range(16)]


def test_sample_unconditional_has_no_labels(run_train, tmp_path):
    _, run = run_train([*SHORT, "logger=none"])
    out = tmp_path / "s"
    result = cli_in_process(  # genlab-sample's own process: test_sample_writes_points_and_labels
        "genlab-sample",
        f"ckpt={run / 'checkpoints/last.ckpt'}",
        "n=10",
        f"out={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert torch.load(out / "samples.pt")["labels"] is None


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.lr=0"], "model.lr must be > 0"),
        (["model.lr=1e-3", "model.lr_d=-1"], "model.lr_d must be > 0"),
        (["data.batch_size=0"], "data.batch_size must be >= 1"),
        (["model.critic_steps=0"], "model.critic_steps must be >= 1"),
        (["model.latent_dim=0"], "model.latent_dim must be >= 1"),
        (["data.shape=[3]"], "data.shape=[2]"),
        (["data=grid", "data.num_classes=24"], "data.num_classes=25"),
        (["hardware=gpu"], "use hardware=cpu"),
        (["ckpt_path=/nowhere/last.ckpt"], "checkpoint not found"),
        (["speedups=[fast]"], "speedups=fast is not a speedup; use speedups=true, false or"),
        (["+model.optimizer_g.lr=1e-3"], "model.optimizer_g.lr would override model.lr_g"),
        (
            ["model.optimizer_d._target_=torch.optim.RMSprop"],
            # Adam's settings stay when another optimizer is swapped in: the error names them
            "model.optimizer_d.fused is not a setting of RMSprop; drop it with "
            "~model.optimizer_d.fused",
        ),
    ],
)
def test_bad_input_gives_one_line(overrides, expected, tmp_path):
    # in this process (the subprocess path is exercised by the tests around this one)
    result = cli_in_process("genlab-train", *overrides, f"paths.log_dir={tmp_path}", cwd=tmp_path)
    if overrides == ["hardware=gpu"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    message = one_line_error(result)
    assert result.returncode == 2
    assert message.startswith("genlab-train: error:") and expected in message, message


def test_unknown_model_lists_the_choices(tmp_path):
    result = cli_in_process("genlab-train", "model=gann", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/gann'" in result.stderr
    assert "wgan_gp" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_and_foreign_checkpoints(trained, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    message = one_line_error(cli_in_process("genlab-sample", f"ckpt={truncated}", cwd=tmp_path))
    assert "cannot read checkpoint" in message

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "not a genlab checkpoint" in one_line_error(
        cli_in_process("genlab-sample", f"ckpt={foreign}", cwd=tmp_path)
    )

    # starting from a checkpoint found outside its run (a new run) with another model: the
    # ring run is conditional with 8 classes, this one is not
    elsewhere = tmp_path / "shared.ckpt"
    elsewhere.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    result = cli_in_process(
        "genlab-train", f"ckpt_path={elsewhere}", f"paths.log_dir={tmp_path}", cwd=tmp_path
    )
    message = one_line_error(result)
    assert "different model" in message and "data=ring" in message, message


def test_sample_rejects_labels_for_unconditional_and_bad_n(trained, tmp_path):
    result = cli_in_process(
        "genlab-sample", f"ckpt={trained / 'checkpoints' / 'last.ckpt'}", "n=0", cwd=tmp_path
    )
    assert "n must be a whole number >= 1" in one_line_error(result)
    result = cli_in_process("genlab-sample", "ckpt=x", "nn=3", cwd=tmp_path)
    assert "unknown option nn" in one_line_error(result)


def test_multirun_with_ddp_spawns_ranks_instead_of_new_sweeps(tmp_path):
    """A DDP job inside a multirun: its two ranks train the one job (Lightning's default
    launcher would re-run the command line, a new sweep per rank)."""
    folder = tmp_path / "sweep"
    result = cli(
        "genlab-train", "-m", "hardware=ddp_cpu", "model.lr=choice(1e-3)", "trainer.max_epochs=1",
        "trainer.limit_train_batches=4", "trainer.enable_progress_bar=false",
        "~callbacks.sample_quality", f"hydra.sweep.dir={folder}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = [p for p in folder.iterdir() if p.is_dir()]  # one job, no sweep per rank
    assert job.name == "0_model.lr=0.001"
    record = json.loads((job / "metrics.json").read_text())
    assert record["metrics"]["ddp/replicas_in_sync"] == 1.0
    # the spawned ranks' progress, not the idle main process's zeros: 4 batches, D and G steps
    assert (record["epochs"], record["global_step"]) == (1, 8)
    assert not any(name.startswith("progress/") for name in record["metrics"])
