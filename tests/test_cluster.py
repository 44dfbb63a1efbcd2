"""Multi-node DDP on a SLURM cluster, without one: what `-m hydra/launcher=slurm` asks SLURM
for, in the config and in the job script submitit hands to `sbatch` (a stand-in on PATH
that keeps the script and submits nothing), and the requests refused before submission."""

import os
from pathlib import Path

import pytest

from helpers import cli, cli_in_process, compose_train, one_line_error

MULTI_NODE = [
    "hydra/launcher=slurm",
    "hardware=multi_gpu",
    "trainer.num_nodes=2",
    "trainer.devices=4",
]


@pytest.fixture
def sbatch(tmp_path, monkeypatch) -> Path:
    """`sbatch` and `srun` on PATH that submit nothing: sbatch keeps the job script it is
    given in the returned path and fails, so the launcher stops there instead of waiting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "job.sh"
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" "{script}"\necho "sbatch: kept the job script" >&2\nexit 1\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def refused(tmp_path: Path, *overrides: str):
    return cli_in_process(
        "genlab-train", "-m", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
    )


def sbatch_lines(script: Path) -> set[str]:
    return {line for line in script.read_text().splitlines() if line.startswith("#SBATCH")}


@pytest.mark.parametrize(
    "overrides, nodes, tasks, gpus",
    [
        (MULTI_NODE, 2, 4, 4),
        (["hydra/launcher=slurm", "hardware=gpu"], 1, 1, 1),
        (["hydra/launcher=slurm", "hardware=ddp_cpu", "trainer.num_nodes=3"], 3, 2, None),
        (["hydra/launcher=slurm"], 1, 1, None),  # hardware=cpu
    ],
)
def test_the_slurm_launcher_is_sized_from_the_trainer(overrides, nodes, tasks, gpus, tmp_path):
    cfg = compose_train([*overrides, "hydra.launcher.partition=gpu"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (nodes, tasks, gpus)
    # the plugin's own settings stay, and take overrides
    assert (launcher.partition, launcher.timeout_min) == ("gpu", 60)


@pytest.mark.parametrize(
    "overrides, wanted, absent",
    [
        (  # one job on 2 nodes of 4 GPUs: 8 DDP processes
            [*MULTI_NODE, "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=240"],
            {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
             "#SBATCH --partition=gpu", "#SBATCH --time=240"},
            "#SBATCH --array",
        ),
        (  # a sweep of them: a job array, every job of the same size
            [*MULTI_NODE, "model.lr=1e-4,1e-3"],
            {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
             "#SBATCH --array=0-1%2"},
            "#SBATCH --gpus-per-task",
        ),
    ],
    ids=["one_job", "sweep"],
)  # fmt: skip
def test_the_job_script_asks_slurm_for_every_ddp_process(
    overrides, wanted, absent, sbatch, tmp_path
):
    """The real genlab-train, Hydra launcher and submitit, up to `sbatch` (a subprocess: the
    launcher pickles the run's state, which a test's captured output is not part of)."""
    result = cli(
        "genlab-train", "-m", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
    )
    assert result.returncode != 0 and "sbatch: kept the job script" in result.stderr
    lines = sbatch_lines(sbatch)
    assert wanted <= lines, sorted(lines)
    assert not any(line.startswith(absent) for line in lines), sorted(lines)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["hydra/launcher=slurm", "hardware=multi_gpu"],
            "trainer.devices=-1 cannot size a SLURM job; give the GPUs (or CPU processes) per "
            "node, e.g. trainer.devices=4",
        ),
        (
            [*MULTI_NODE, "trainer.num_nodes=0"],
            "trainer.num_nodes must be a whole number of 1 or more (got 0)",
        ),
        (
            [*MULTI_NODE, "trainer.num_nodes=1,2"],
            "trainer.num_nodes is swept, but every job of a SLURM sweep gets the same nodes and "
            "tasks; run one sweep per value",
        ),
        (  # the plugin's launcher asks for 1 node of 1 task whatever the trainer says
            ["hydra/launcher=submitit_slurm", *MULTI_NODE[1:]],
            "hydra.launcher.nodes=1, but Lightning needs 2 for trainer.num_nodes=2 "
            "trainer.devices=4; hydra/launcher=slurm sizes the job from the trainer (leave "
            "hydra.launcher.nodes out)",
        ),
        (
            ["hydra/launcher=submitit_slurm", "hardware=gpu"],
            "hydra.launcher.gpus_per_node=null asks for fewer GPUs than trainer.devices=1; "
            "hydra/launcher=slurm sizes the job from the trainer (leave "
            "hydra.launcher.gpus_per_node out)",
        ),
        (
            [*MULTI_NODE, "hydra.launcher.tasks_per_node=1"],
            "hydra.launcher.tasks_per_node=1, but Lightning needs 4 for trainer.num_nodes=2 "
            "trainer.devices=4; hydra/launcher=slurm sizes the job from the trainer (leave "
            "hydra.launcher.tasks_per_node out)",
        ),
    ],
    ids=["every_gpu", "no_nodes", "swept_nodes", "plugin_launcher", "no_gpu", "tasks_set"],
)
def test_a_job_slurm_cannot_run_is_refused_before_submission(overrides, message, sbatch, tmp_path):
    result = refused(tmp_path, *overrides)
    assert one_line_error(result) == f"genlab-train: error: {message}"
    assert not sbatch.exists() and not (tmp_path / "sweep").exists()


def test_a_run_on_no_nodes_is_refused(tmp_path):
    result = cli_in_process(
        "genlab-train", "trainer.num_nodes=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert one_line_error(result) == (
        "genlab-train: error: trainer.num_nodes must be a whole number of 1 or more (got 0)"
    )
