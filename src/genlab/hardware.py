"""What the machine offers a run: a GPU or not, bf16 arithmetic, and the process settings
that follow from it."""

import logging
import os
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from genlab.errors import ConfigError, require

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
# the values of trainer.accelerator that mean GPUs
GPU_ACCELERATORS = ("gpu", "cuda")

log = logging.getLogger("genlab.train")


def on_gpu(cfg: DictConfig) -> bool:
    return str(cfg.trainer.get("accelerator", "auto")) in GPU_ACCELERATORS


def check_num_nodes(trainer: DictConfig) -> None:
    num_nodes = trainer.get("num_nodes", 1)
    require(
        type(num_nodes) is int and num_nodes >= 1,
        f"trainer.num_nodes must be a whole number of 1 or more (got {num_nodes!r})",
    )


def check_hardware(cfg: DictConfig) -> None:
    """At least one node; a GPU run needs a GPU; bf16 needs a GPU with bf16 arithmetic
    (float16 otherwise)."""
    check_num_nodes(cfg.trainer)
    if not on_gpu(cfg):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            "no CUDA GPU is visible on this machine; use hardware=cpu (or hardware=ddp_cpu)"
        )
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("bf16") and not gpu_has_bf16():
        # hardware=gpu asks for bf16 where the GPU has it (Ampere and newer); older GPUs
        # get float16 with loss scaling, which Lightning's manual optimization handles
        log.warning(
            "this GPU has no bf16 arithmetic; training with trainer.precision=16-mixed "
            "instead (or set trainer.precision=32-true)"
        )
        with open_dict(cfg):
            cfg.trainer.precision = "16-mixed"


def gpu_has_bf16() -> bool:
    """Native bf16 on the current GPU (emulated bf16 on older GPUs is slow)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.4 has no including_emulation
        return torch.cuda.get_device_capability()[0] >= 8


def wants_channels_last(setting: Any, cfg: DictConfig, data_shape: tuple[int, ...]) -> bool:
    """model.channels_last: true, false, or auto (on for images on a GPU, where convolutions
    run faster in NHWC; on CPUs it rarely helps)."""
    if str(setting) != "auto":
        return bool(setting)
    return on_gpu(cfg) and len(data_shape) == 3


def skip_nvml_probe() -> bool:
    """Drop the NVML-based CUDA check that Lightning asks for on import, on a machine with no
    GPU; True when dropped.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that asking whether CUDA is there does
    not start the CUDA driver in a process that may fork later. With that set and no GPU,
    torch never caches the answer: every call loads the NVML library anew, and torch's
    optimizers ask on every `step()` (their CUDA-graph health check), which doubled the
    time of an Adam step on a small layer (bench/results.md). Without a GPU there is no
    driver state for a fork to inherit, so the plain check is as safe. With a GPU nothing
    changes: torch caches the answer once CUDA starts."""
    if os.environ.get(NVML_CHECK) != "1" or torch.cuda.is_available():
        return False
    del os.environ[NVML_CHECK]
    return True
