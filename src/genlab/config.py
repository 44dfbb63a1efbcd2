"""A run's config: composed the way genlab-train composes it, and checked before anything is
built (every key a setting of its target, the speedups known, the tuning file reported)."""

import collections.abc
import difflib
import inspect
import logging
import types
import typing
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from genlab import cluster, speedups
from genlab.errors import ConfigError, require
from genlab.hardware import check_hardware
from genlab.report_reference import check_reference
from genlab.sweeps import register_resolvers

log = logging.getLogger("genlab.train")
CONF = Path(__file__).parent / "conf"
# settings of every model config that genlab-train applies to the model (build.py), rather
# than pass to its constructor
SPEED_KEYS = ("compile", "channels_last")
CHECKED_GROUPS = ("model", "data", "trainer", "callbacks", "logger")
cluster.register_resolver()  # before Hydra composes: conf/hydra/launcher/slurm.yaml's GPUs


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
    check_top_level(cfg)
    check_hardware(cfg)
    speedups.selected(cfg.get("speedups", True))
    for group in CHECKED_GROUPS:
        if cfg.get(group):
            check_settings(cfg[group], group)
    check_run_length(cfg.trainer)


def check_top_level(cfg: DictConfig) -> None:
    """genlab-train's own settings, which no target's signature checks."""
    for key, kinds in (("seed", {"whole number"}), ("num_threads", {"whole number", "null"})):
        value = cfg.get(key)
        if kind_of(value) not in kinds:
            raise ConfigError(f"{key} must be {describe(kinds)} (got {value!r})")
    if cfg.get("reference") is not None:  # published rows for genlab-report: checked now
        check_reference(OmegaConf.to_container(cfg.reference, resolve=True), "the run's config")


def check_run_length(trainer: DictConfig) -> None:
    """`trainer.max_epochs=-1` trains forever (Lightning's meaning) unless another limit ends it."""
    if trainer.get("max_epochs") == -1 and (trainer.get("max_steps") or -1) == -1:
        require(
            trainer.get("max_time") is not None,
            "trainer.max_epochs=-1 would train forever; add trainer.max_time=DD:HH:MM:SS or "
            "trainer.max_steps=N, or give trainer.max_epochs=N",
        )


# ---- every key a setting of its target ------------------------------------------------------


def check_settings(node: Any, path: str) -> None:
    """Every key of a `_target_` config must be a parameter of its target, so that a typo
    (`model.lr_G` for `model.lr_g`) stops the run at once instead of being ignored or
    failing deep inside the target. Walks nested configs; targets that take **kwargs pass."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        check_keys_of(str(node._target_), [str(k) for k in node.keys()], path)
        check_values_of(str(node._target_), node, path)
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


def initializers(target: Any) -> list[Any]:
    """A class's `__init__` and its parents', nearest first; a function alone."""
    return [c.__init__ for c in inspect.getmro(target)] if inspect.isclass(target) else [target]


def accepted_settings(target: Any) -> list[str] | None:
    """The keyword arguments `target` accepts; for a genlab class whose `__init__` passes
    **kwargs on to its parent's, those of the parent too. None when anything goes."""
    known: list[str] = []
    for function in initializers(target):
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


# ---- every value of the kind its parameter takes --------------------------------------------


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "whole number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    return "mapping" if isinstance(value, (dict, DictConfig)) else "other"


# what a plain annotation accepts, as kinds of value (Hydra reads `lr=1` as a whole number)
PLAIN_KINDS = {
    float: {"number", "whole number"}, int: {"whole number"}, bool: {"true or false"},
    str: {"string"}, type(None): {"null"},
}  # fmt: skip


def union_members(annotation: Any) -> tuple:
    """The members of a Union (`float | None`, `Optional[float]`), or the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def accepted_kinds(annotation: Any) -> set[str] | None:
    """The kinds of value an annotation accepts (`float | None`: a number or null), or None
    when it accepts anything or genlab cannot tell."""
    found: set[str] = set()
    for member in union_members(annotation):
        origin = typing.get_origin(member)
        if origin is typing.Literal:
            found |= {kind_of(v) for v in typing.get_args(member)}
        elif member in PLAIN_KINDS:
            found |= PLAIN_KINDS[member]
        elif member in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
            found.add("list")
        elif member is dict or origin in (dict, collections.abc.Mapping):
            found.add("mapping")
        else:
            return None
    return found


def literal_choices(annotation: Any) -> list | None:
    """The values an annotation made only of Literals (and None) allows, else None."""
    choices: list = []
    for member in union_members(annotation):
        if typing.get_origin(member) is typing.Literal:
            choices += typing.get_args(member)
        elif member is type(None):
            choices.append(None)
        else:
            return None
    return choices


def describe(kinds: set[str]) -> str:
    names = {"whole number": "a whole number", "number": "a number", "string": "a string",
             "list": "a list", "mapping": "a mapping", "null": "null"}  # fmt: skip
    if "number" in kinds:
        kinds = kinds - {"whole number"}
    return " or ".join(names.get(k, k) for k in sorted(kinds, key=list(names).index))


def check_values_of(target: str, node: DictConfig, path: str) -> None:
    """Each value given to `target` must be of a kind its parameter's annotation takes, so
    that `model.lr=abc` says `model.lr must be a number (got 'abc')` now rather than fail
    with a TypeError inside the optimizer."""
    try:
        annotations = parameter_annotations(get_object(target))
    except (ValueError, TypeError, ImportError, AttributeError, NameError):
        return
    for key, value in node.items_ex(resolve=False):
        key = str(key)
        if key not in annotations or OmegaConf.is_interpolation(node, key):
            continue
        if isinstance(value, DictConfig) and "_target_" in value:
            continue  # an object built from its own config
        choices = literal_choices(annotations[key])
        if choices is not None and value not in choices:
            shown = ", ".join(str(c) for c in dict.fromkeys(map(str, choices)))
            raise ConfigError(f"{path}.{key} must be one of {shown} (got {value!r})")
        kinds = accepted_kinds(annotations[key])
        if kinds is None or kind_of(value) in kinds:
            continue
        if kind_of(value) in ("whole number", "number", "true or false") and "string" in kinds:
            continue  # Hydra reads `name=3` as a number: a string parameter takes it as text
        raise ConfigError(f"{path}.{key} must be {describe(kinds)} (got {value!r})")


def parameter_annotations(target: Any) -> dict[str, Any]:
    """The annotations of the keyword arguments `target` accepts (its `__init__`, and for a
    genlab class that passes **kwargs on, its parents')."""
    found: dict[str, Any] = {}
    for function in reversed(initializers(target)):
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # names only the library itself can resolve
            continue
        found |= {k: v for k, v in hints.items() if k != "return"}
    return found


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
    log.info(
        "tuning: tuning/%s applied (tuning=none leaves it out): %s",
        path.name, "; ".join(changes) or "nothing changed",
    )  # fmt: skip


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
