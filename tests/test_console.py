"""A run talks like a good tool: one line for a wrong value or a place it cannot write, said
before anything is written; a console and a train.log that say what happens; TensorBoard
charts whose curves can be told apart."""

import re
from pathlib import Path

import pytest

from genlab.config import validate
from genlab.errors import ConfigError
from genlab.folders import check_writable

from helpers import cli, cli_in_process, compose_train, one_line_error, read_events, tb_run

TINY = [
    "trainer.max_epochs=2", "trainer.limit_train_batches=4",
    "callbacks.sample_quality.num_samples=200", "num_threads=1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.lr=abc", "model.lr must be a number (got 'abc')"),
        ("seed=abc", "seed must be a whole number (got 'abc')"),
        ("num_threads=two", "num_threads must be a whole number or null (got 'two')"),
        ("trainer.max_epochs=abc", "trainer.max_epochs must be a whole number or null"),
        ("model.latent_dim=2.5", "model.latent_dim must be a whole number (got 2.5)"),
        ("trainer.precision=abc", "trainer.precision must be one of"),
        ("data.batch_size=100000", "data.batch_size=100000 is larger than the 51200 training"),
        ("model=dcgan", "kind=dcgan makes convolutional nets for images, but the data holds"),
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 would train forever; add"),
        (
            "reference={source:x,rows:[{modes:3}]}",
            "reference.rows[0] must be a mapping with a name",
        ),
    ],
)
def test_a_wrong_value_is_one_line_and_leaves_nothing_behind(tmp_path, override, message):
    run = tmp_path / "run"
    line = one_line_error(cli_in_process("genlab-train", override, f"hydra.run.dir={run}",
                                         cwd=tmp_path))  # fmt: skip
    assert line.startswith("genlab-train: error: ") and message in line, line
    assert not run.exists()  # no record, no event file, not even the empty folder


def test_a_run_without_an_epoch_limit_needs_another_one(tmp_path):
    endless = ["trainer.max_epochs=-1"]
    for enough in (["trainer.max_time=00:00:10:00"], ["trainer.max_steps=100"]):
        validate(compose_train([*endless, *enough], tmp_path))
    with pytest.raises(ConfigError, match="would train forever"):
        validate(compose_train(endless, tmp_path))


@pytest.mark.parametrize("where", ["paths.log_dir", "hydra.run.dir", "hydra.sweep.dir"])
def test_a_place_that_cannot_be_written_is_one_line(tmp_path, where):
    blocker = tmp_path / "a_file"  # a file in the path: unwritable whoever runs the test
    blocker.write_text("not a folder")
    multirun = ["-m", "model.lr=1e-3"] if where == "hydra.sweep.dir" else []
    result = cli_in_process("genlab-train", *multirun, f"{where}={blocker / 'out'}", cwd=tmp_path)
    line = one_line_error(result)
    assert f"cannot write to {blocker}" in line and where.split(".")[-1] in line, line


def test_a_run_folder_whose_checkpoints_cannot_be_written_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    check_writable(run)
    (run / "checkpoints").write_text("a file where the checkpoints should go")
    with pytest.raises(ConfigError, match=r"cannot write to .*checkpoints"):
        check_writable(run)


def test_a_piped_run_prints_a_line_per_epoch_and_its_log_holds_the_console(tmp_path):
    run = tmp_path / "run"
    result = cli("genlab-train", *TINY, "trainer.log_every_n_steps=2", f"hydra.run.dir={run}",
                 cwd=tmp_path)  # piped: no tty  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "\r" not in out and "it/s" not in out  # no progress bar
    for noise in ("Tip", "litlogger", "GPU available", "LeafSpec", "limit_train_batches"):
        assert noise not in out + result.stderr, noise
    lines = out.strip().splitlines()
    assert lines[0] == f"run folder: {run.resolve()}"
    assert lines[1].startswith("model: gan: generator MLPGenerator (")
    assert lines[2] == "data: moons: 51200 training samples of shape [2], batches of 256"
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all(re.search(r"loss/d \S+  loss/g \S+  eval/coverage", line) for line in epochs)
    assert lines[-2] == f"Run folder: {run.resolve()}"
    assert lines[-1].endswith(f"--logdir {run.resolve() / 'tensorboard'} --host 127.0.0.1")
    # train.log: the same lines, each after a time stamp
    logged = [line[24:] for line in (run / "train.log").read_text().splitlines()
              if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line)]  # fmt: skip
    for line in (*lines[:3], *epochs, lines[-2]):
        assert line in logged, line

    # D's and G's losses share a chart in two colours: TensorBoard colours curves by run, so
    # each curve of the loss chart is also its own run, under the chart's title, at the steps
    # of the main run's loss/d and loss/g
    main = read_events(tb_run(run))
    for tag in ("loss/d", "loss/g"):
        curve = read_events(tb_run(run) / f"D and G losses_{tag.replace('/', '_')}")
        assert curve.Tags()["scalars"] == ["D and G losses"]
        mine = [(e.step, round(e.value, 5)) for e in curve.Scalars("D and G losses")]
        theirs = [(e.step, round(e.value, 5)) for e in main.Scalars(tag)]
        assert mine == theirs and len(mine) == 4  # 8 batches, every 2nd logged


def test_a_resumed_run_keeps_writing_its_own_log(tmp_path):
    run = tmp_path / "run"
    first = cli_in_process("genlab-train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={run}",
                           cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    again = cli_in_process(
        "genlab-train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_epochs=2", f"hydra.run.dir={elsewhere}", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    log = (run / "train.log").read_text()
    assert log.count("run folder: ") == 2
    assert re.search(r"resuming from \S+last.ckpt with trainer.max_epochs=2\n", log)
    assert "epoch 1/1" in log and "epoch 2/2" in log
    assert not Path(elsewhere).exists()  # Hydra's new folder, unused, is gone


def test_a_run_that_reaches_no_mode_says_so_at_its_end(tmp_path):
    # four batches of an untrained G: its points sit near the origin, far from the ring
    result = cli_in_process(
        "genlab-train", "data=ring", *TINY, "logger=none", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert any(
        "no generated sample lies within 3 std of any of the data's modes" in w for w in warnings
    )
    # a run that found the modes says nothing of the kind
    from genlab.runs import collapse_warning

    assert collapse_warning({"eval/modes": 3.0, "eval/hq": 0.4}) is None
    assert collapse_warning({"eval/fd": 1.0}) is None
