"""A run's config: composed the way genlab-train composes it, and checked before anything is
built (every key a setting of its target, the speedups known, the tuning file reported)."""

import difflib
import inspect
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from genlab import speedups
from genlab.errors import ConfigError
from genlab.hardware import check_hardware
from genlab.sweeps import register_resolvers

CONF = Path(__file__).parent / "conf"
# settings of every model config that genlab-train applies to the model (build.py), rather
# than pass to its constructor
SPEED_KEYS = ("compile", "channels_last")
CHECKED_GROUPS = ("model", "data", "trainer", "callbacks", "logger")


def compose_run(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `genlab-train OVERRIDES` would run, writing into `output_dir`, with Hydra's
    run state set as `train()` expects: for tests and benchmarks that call `train()` directly."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module("genlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(output_dir)
        cfg.trainer.enable_progress_bar = False
    HydraConfig.instance().set_config(cfg)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Everything that can be checked on the config alone, before anything is built."""
    check_hardware(cfg)
    speedups.selected(cfg.get("speedups", True))
    for group in CHECKED_GROUPS:
        if cfg.get(group):
            check_settings(cfg[group], group)


# ---- every key a setting of its target ------------------------------------------------------


def check_settings(node: Any, path: str) -> None:
    """Every key of a `_target_` config must be a parameter of its target, so that a typo
    (`model.lr_G` for `model.lr_g`) stops the run at once instead of being ignored or
    failing deep inside the target. Walks nested configs; targets that take **kwargs pass."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        check_keys_of(str(node._target_), [str(k) for k in node.keys()], path)
    for key, value in node.items_ex(resolve=False):
        if not str(key).startswith("_"):
            check_settings(value, f"{path}.{key}")


def check_keys_of(target: str, keys: list[str], path: str) -> None:
    try:
        known = accepted_settings(get_object(target))
    except (ValueError, TypeError, ImportError, AttributeError):
        return  # not introspectable: leave it to the target
    if known is None:  # takes any keyword
        return
    for key in keys:
        if key.startswith("_") or key in known or key in SPEED_KEYS:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = (
            f"did you mean {path}.{close[0]}?"
            if close
            else f"drop it with ~{path}.{key} (its settings: {', '.join(known)})"
        )
        raise ConfigError(f"{path}.{key} is not a setting of {target.rsplit('.', 1)[-1]}; {hint}")


def accepted_settings(target: Any) -> list[str] | None:
    """The keyword arguments `target` accepts; for a genlab class whose `__init__` passes
    **kwargs on to its parent's, those of the parent too. None when anything goes."""
    owners = [c.__init__ for c in inspect.getmro(target)] if inspect.isclass(target) else [target]
    known: list[str] = []
    for function in owners:
        takes_any = False
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD:
                takes_any = True
            elif name != "self" and parameter.kind is not parameter.VAR_POSITIONAL:
                known.append(name)
        if not takes_any:
            return list(dict.fromkeys(known))
        if not function.__module__.startswith("genlab."):
            return None  # others may pass **kwargs anywhere (DDPStrategy: to DDP)
    return None


# ---- what the tuning file changes -------------------------------------------------------------


def tuning_file(cfg: DictConfig) -> Path | None:
    """The `tuning/<data>_<model>.yaml` this run composed in, if there is one."""
    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("tuning")
    path = CONF / "tuning" / f"{choice}.yaml"
    return path if choice and choice != "none" and path.is_file() else None


def tuning_changes(cfg: DictConfig) -> list[str]:
    """What the run's tuning file changed, as `key old -> new`: the run's config against
    the same command with `tuning=none`."""
    untuned = compose_again([*HydraConfig.get().overrides.task, "tuning=none"])
    return differences(plain(untuned), plain(cfg))


def compose_again(overrides: list[str]) -> DictConfig:
    """The task config `genlab-train OVERRIDES` composes (without Hydra's node), from inside
    a run (Hydra is initialized) or outside one (tests that call `train()`)."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_module("genlab.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def report_tuning(cfg: DictConfig) -> None:
    """Say on the console which tuning file the run applied and what it changed."""
    path = tuning_file(cfg)
    if path is None:
        return
    changes = tuning_changes(cfg)
    print(
        f"genlab-train: tuning/{path.name} applied (tuning=none leaves it out): "
        + ("; ".join(changes) or "nothing changed"),
        file=sys.stderr,
        flush=True,
    )


def plain(cfg: DictConfig) -> dict:
    """The run's own settings as plain values (Hydra's and the paths left out)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig)
        else cfg[key]
        for key in cfg
        if key not in ("hydra", "paths")
    }  # fmt: skip


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """`key old -> new` for every setting that differs, dotted keys, in the config's order."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            found += differences(old.get(key, "(unset)"), new.get(key, "(unset)"), where)
        return found
    if old == new:
        return []
    return [f"{path} {short(old)} -> {short(new)}"]


def short(value: Any) -> str:
    """A setting in a few characters: `CosineAnnealingLR(T_max=20)` for a target's config."""
    if isinstance(value, dict) and "_target_" in value:
        settings = ", ".join(f"{k}={v}" for k, v in value.items() if not str(k).startswith("_"))
        return f"{str(value['_target_']).rsplit('.', 1)[-1]}({settings})"
    if value is None:
        return "null"
    return str(value)
