"""The one place where genlab reaches into a library's internals, for speed.

Everything else in genlab uses public APIs only. What lives here makes Lightning's and
torch's per-step work cheaper without changing a single number a run computes
(`tests/test_speedups.py` trains with and without and compares the weights bit for bit):

- `direct_updates`: each update calls torch's backward and step itself where no hook
  listens, instead of Lightning's `manual_backward` and `LightningOptimizer.step`, keeping
  Lightning's step count through its private `_on_before_step` / `_on_after_step`;
- `no_fill`: deterministic mode (on for CPU runs) without its NaN fill of every new tensor,
  a process-wide torch setting, restored after the run.

Each speedup:
- names the library it touches and the versions it was tested with; outside that range it
  switches itself off with one warning line, so that an upgrade can make a run slower but
  never wrong;
- is on only inside `applied(...)`, around one run's fit, and undone after it;
- earned its place by a measured gain of at least 3% steps/s on some workload, in two
  separate runs of `bench/overhead.py --compare speedups=...`; bench/results.md, section
  "Speedups", lists every candidate measured: these two, and six below the bar.

`speedups: true` in the top config (the default) turns every one on, `speedups: false` none,
and a list (`speedups=[no_fill]`) only the named ones.
"""

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from packaging.version import Version

from genlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speedup:
    name: str
    package: str
    tested: tuple[str, str]  # the versions tested: low <= version < high
    what: str
    enable: Callable[[], None]
    disable: Callable[[], None]

    def supported(self) -> bool:
        try:
            version = Version(metadata.version(self.package))
        except metadata.PackageNotFoundError:
            return False
        low, high = (Version(v) for v in self.tested)
        return low <= version < high


# ---- Lightning's manual optimization: no hooks around an update when nobody listens --------

UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# per module: (a weak reference to the trainer it was decided for, the decision)
_DIRECT: "weakref.WeakKeyDictionary[object, tuple[weakref.ref, bool]]" = weakref.WeakKeyDictionary()


def updates_directly(module, optimizer) -> bool:
    """Whether `GenerativeModule.optimize` may call torch's backward and step itself.

    `manual_backward` and `LightningOptimizer.step` pass each update through the strategy
    and the precision plugin, which dispatch `on_before_backward`, `on_after_backward` and
    `on_before_optimizer_step` to every callback and the module and wrap the step in a
    closure. Where nothing can tell the difference (one device, 32-bit or bf16 precision
    without a scaler, no profiler asked for, no callback or module listening to those hooks)
    the update skips them; `step` keeps Lightning's step count. Decided once per trainer."""
    if "direct_updates" not in ACTIVE:
        return False
    trainer = module._trainer
    if trainer is None or not isinstance(optimizer, LightningOptimizer):
        return False
    known = _DIRECT.get(module)
    if known is not None and known[0]() is trainer:
        return known[1]
    direct = _nothing_listens(module, trainer)
    _DIRECT[module] = (weakref.ref(trainer), direct)
    return direct


def _nothing_listens(module, trainer) -> bool:
    precision = trainer.precision_plugin
    return (
        not module.automatic_optimization
        and module._fabric is None
        and type(trainer.strategy) is SingleDeviceStrategy
        and (
            type(precision) is Precision
            or (type(precision) is MixedPrecision and precision.scaler is None)
        )
        and isinstance(trainer.profiler, PassThroughProfiler)
        and not any(
            is_overridden(hook, module, L.LightningModule)
            for hook in ("backward", *UPDATE_HOOKS)  # the module also runs the backward
        )
        and not any(
            is_overridden(hook, callback, L.Callback)
            for callback in trainer.callbacks
            for hook in UPDATE_HOOKS
        )
    )


def step(optimizer) -> None:
    """The torch optimizer's step, inside Lightning's step accounting (`global_step`)."""
    optimizer._on_before_step()
    optimizer.optimizer.step()
    optimizer._on_after_step()


def _enable_direct_updates() -> None:
    _DIRECT.clear()


def _disable_direct_updates() -> None:
    _DIRECT.clear()


# ---- deterministic mode without the NaN fills -------------------------------------------------

_FILL: list[bool] = []


def _enable_no_fill() -> None:
    """Deterministic mode (`trainer.deterministic`, on for CPU runs) also fills every new
    tensor with NaN, to expose reads of uninitialised memory; correct code never reads them,
    and the fills cost 5 to 6% of a DCGAN step on a CPU."""
    _FILL.append(torch.utils.deterministic.fill_uninitialized_memory)
    torch.utils.deterministic.fill_uninitialized_memory = False


def _disable_no_fill() -> None:
    if _FILL:
        torch.utils.deterministic.fill_uninitialized_memory = _FILL.pop()


# ---- the registry -----------------------------------------------------------------------------

SPEEDUPS: dict[str, Speedup] = {
    speedup.name: speedup
    for speedup in (
        Speedup(
            "direct_updates",
            "lightning",
            ("2.6", "2.7"),
            "each update calls torch's backward and step where no hook listens",
            _enable_direct_updates,
            _disable_direct_updates,
        ),
        Speedup(
            "no_fill",
            "torch",
            ("2.14", "2.16"),
            "deterministic mode does not fill new tensors with NaN",
            _enable_no_fill,
            _disable_no_fill,
        ),
    )
}

ACTIVE: frozenset[str] = frozenset()


def selected(selection: bool | Iterable[str] | None) -> list[str]:
    """The speedups a `speedups` setting asks for: all (true), none (false), or a list."""
    if selection is None or selection is False:
        return []
    if selection is True:
        return list(SPEEDUPS)
    if isinstance(selection, str):
        selection = [selection]
    names = [str(name) for name in selection]
    unknown = sorted(set(names) - set(SPEEDUPS))
    if unknown:
        raise ConfigError(
            f"speedups={unknown[0]} is not a speedup; use speedups=true, false or a list of "
            f"{', '.join(SPEEDUPS)}"
        )
    return names


@contextlib.contextmanager
def applied(selection: bool | Iterable[str] | None) -> Iterator[frozenset[str]]:
    """Turn the selected speedups on for the block (one run's fit) and off after it. Those
    whose library is outside the versions they were tested with stay off, each with a
    warning line. Yields the names that are on."""
    global ACTIVE
    names = []
    for name in selected(selection):
        speedup = SPEEDUPS[name]
        if not speedup.supported():
            version = _version(speedup.package)
            log.warning(
                "speedup %s is off: tested with %s %s to %s, found %s (speedups=false hides "
                "this line)",
                name, speedup.package, *speedup.tested, version,
            )  # fmt: skip
            continue
        names.append(name)
    try:
        for name in names:
            SPEEDUPS[name].enable()
        ACTIVE = frozenset(names)
        yield ACTIVE
    finally:
        ACTIVE = frozenset()
        for name in reversed(names):
            SPEEDUPS[name].disable()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
