"""A sweep on a SLURM cluster: `-m hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml)
asks SLURM for the processes Lightning's DDP expects there, one task per device on each of
`trainer.num_nodes` nodes with the GPUs per node; under any SLURM launcher a request
Lightning cannot run stops with one line before anything is submitted."""

import sys
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from genlab.errors import ConfigError, require
from genlab.hardware import GPU_ACCELERATORS, check_num_nodes

# what sizes a job: every job of a SLURM sweep gets the one request, so none may be swept
SIZING_KEYS = ("hardware", "trainer.num_nodes", "trainer.devices", "trainer.accelerator")
# the SLURM settings that ask for GPUs some other way than gpus_per_node
OTHER_GPU_REQUESTS = ("gres", "gpus_per_task")


def register_resolver() -> None:
    """`${genlab.gpus_per_node:ACCELERATOR,DEVICES}`, for conf/hydra/launcher/slurm.yaml."""
    OmegaConf.register_new_resolver("genlab.gpus_per_node", gpus_per_node, replace=True)


def gpus_per_node(accelerator: str, devices: Any) -> Any:
    """The GPUs a node asks for: `trainer.devices` on GPUs, none on CPUs."""
    return devices if str(accelerator) in GPU_ACCELERATORS else None


def on_slurm(config: DictConfig) -> bool:
    return str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher")


def swept_keys(config: DictConfig) -> set[str]:
    """The keys this multirun sweeps: on the command line (`a=1,2`) or in the sweeper's params."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return {o.key_or_group for o in parsed if o.is_sweep_override()} | {str(k) for k in params}


def check_slurm_request(config: DictConfig) -> None:
    """A SLURM job's size must be the trainer's: nodes = trainer.num_nodes, a task per
    device on each, the GPUs per node; numbers, and the same for every job of the sweep."""
    trainer = config.trainer
    check_num_nodes(trainer)
    devices = trainer.get("devices")
    require(
        type(devices) is int and devices >= 1,
        f"trainer.devices={devices} cannot size a SLURM job; give the GPUs (or CPU processes) "
        "per node, e.g. trainer.devices=4",
    )
    swept = swept_keys(config)
    for key in SIZING_KEYS:
        require(
            key not in swept,
            f"{key} is swept, but every job of a SLURM sweep gets the same nodes and tasks; "
            "run one sweep per value",
        )
    launcher = config.hydra.launcher
    fix = "hydra/launcher=slurm sizes the job from the trainer (leave hydra.launcher.{} out)"
    for key, value in (("nodes", trainer.num_nodes), ("tasks_per_node", devices)):
        require(
            launcher.get(key) == value,
            f"hydra.launcher.{key}={launcher.get(key)}, but Lightning needs {value} for "
            f"trainer.num_nodes={trainer.num_nodes} trainer.devices={devices}; {fix.format(key)}",
        )
    if str(trainer.get("accelerator")) in GPU_ACCELERATORS and not any(
        launcher.get(key) for key in OTHER_GPU_REQUESTS
    ):
        gpus = launcher.get("gpus_per_node")
        require(
            (gpus or 0) >= devices,
            f"hydra.launcher.gpus_per_node={'null' if gpus is None else gpus} asks for fewer "
            f"GPUs than trainer.devices={devices}; {fix.format('gpus_per_node')}",
        )


class CheckSlurmRequest(Callback):
    """Hydra callback: under a SLURM launcher, a job size Lightning can run, or one line and
    exit status 2 before anything is submitted (a login node has no GPU to check)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not on_slurm(config):
            return
        try:
            check_slurm_request(config)
        except ConfigError as error:
            print(f"genlab-train: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
