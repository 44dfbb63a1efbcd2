"""The one place where genlab reaches into a library's private internals, for speed.

Everything else in genlab uses public APIs only. What lives here makes Lightning's or
TensorBoard's per-step bookkeeping cheaper without changing a single number a run computes
(`tests/test_speedups.py` trains with and without and compares the weights bit for bit).

Each speedup:
- names the library it touches and the versions it was tested with; outside that range it
  switches itself off with one warning line, so that an upgrade can make a run slower but
  never wrong;
- is on only inside `applied(...)`, around one run's fit, and undone after it;
- earned its place by a measured gain of at least 3% steps/s on some workload, in two
  separate runs of `bench/overhead.py --compare speedups=...` (bench/results.md, section
  "Speedups").

`speedups: true` in the top config (the default) turns every one on, `speedups: false` none,
and a list (`speedups=[metric_moves]`) only the named ones.
"""

import contextlib
import inspect
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata

import torch
from packaging.version import Version

from genlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speedup:
    name: str
    package: str
    tested: tuple[str, str]  # the versions tested: low <= version < high
    what: str
    enable: Callable[[object], None]  # given the model
    disable: Callable[[], None]

    def supported(self) -> bool:
        try:
            version = Version(metadata.version(self.package))
        except metadata.PackageNotFoundError:
            return False
        low, high = (Version(v) for v in self.tested)
        return low <= version < high


# ---- Lightning's self.log: no move of a metric that is already where it should be ----------


def _moved(state: dict, device: torch.device) -> bool:
    """Whether a tensor of the state, or of a dict, list or tuple in it, lies elsewhere."""
    for value in state.values():
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list | tuple):
            value = (value,)
        if any(isinstance(t, torch.Tensor) and t.device != device for t in value):
            return True
    return False


def _enable_metric_moves(model: object) -> None:
    """Each `self.log` call runs `_ResultMetric.to(value.device)`, which walks the metric's
    whole `__dict__` and deep-copies its metadata even when nothing moves (Lightning issue
    #20388, fixed by the unmerged pull request #21769). A move to the device every tensor of
    the state is already on returns at once; anything else goes Lightning's way."""
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric

    original = _ResultMetric.to
    if getattr(original, "genlab_original", None) is not None:
        return

    def to(self, *args, **kwargs):
        if not kwargs and len(args) == 1 and isinstance(args[0], torch.device) and self.is_tensor:
            if not _moved(self.__dict__, args[0]):
                return self
        return original(self, *args, **kwargs)

    to.genlab_original = original
    _ResultMetric.to = to


def _disable_metric_moves() -> None:
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric

    original = getattr(_ResultMetric.to, "genlab_original", None)
    if original is not None:
        _ResultMetric.to = original


# ---- Lightning's manual optimization: no hooks around an update when nobody listens --------

UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# per module: (a weak reference to the trainer it was decided for, the decision)
_DIRECT: "weakref.WeakKeyDictionary[object, tuple[weakref.ref, bool]]" = (
    weakref.WeakKeyDictionary()
)


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
    from lightning.pytorch.core.optimizer import LightningOptimizer

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
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision, Precision
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

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


def _enable_direct_updates(model: object) -> None:
    _DIRECT.clear()


def _disable_direct_updates() -> None:
    _DIRECT.clear()


# ---- attributes Lightning sets around every hook, without nn.Module's checks ----------------

# Lightning names the running hook in `_current_fx_name` before and after every hook it calls
# (about 20 times a GAN step) and the models hand the guard their latest values every step;
# `nn.Module.__setattr__` checks each assignment against parameters, buffers and submodules.
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "guard_values"})


def _plain_setattr(self, name: str, value) -> None:
    from genlab.models.base import GenerativeModule

    if name in PLAIN_ATTRIBUTES:
        object.__setattr__(self, name, value)
    else:
        super(GenerativeModule, self).__setattr__(name, value)


def _enable_plain_attributes(model: object) -> None:
    from genlab.models.base import GenerativeModule

    GenerativeModule.__setattr__ = _plain_setattr


def _disable_plain_attributes() -> None:
    from genlab.models.base import GenerativeModule

    if "__setattr__" in GenerativeModule.__dict__:
        del GenerativeModule.__setattr__


# ---- training_step's signature, which Lightning inspects on every batch ----------------------

_SIGNED: list = []


def _enable_stored_signature(model: object) -> None:
    """Lightning asks whether `training_step` takes `batch_idx` on every batch; a stored
    `__signature__` (which inspect honours) answers at once."""
    for cls in type(model).__mro__:
        function = cls.__dict__.get("training_step")
        if inspect.isfunction(function) and "__signature__" not in function.__dict__:
            function.__signature__ = inspect.signature(function)
            _SIGNED.append(function)


def _disable_stored_signature() -> None:
    while _SIGNED:
        del _SIGNED.pop().__signature__


# ---- TensorBoard's record checksums in C ------------------------------------------------------

_CHECKSUMS: list = []


def _masked_crc32c(data: bytes) -> int:
    """TensorFlow's masked CRC-32C of a record (the value TensorBoard computes)."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _enable_fast_checksums(model: object) -> None:
    """Without TensorFlow, TensorBoard frames every event record with a CRC-32C computed in
    pure Python (3 ms for a 20 KB picture, holding the GIL while the loop waits);
    google-crc32c's C code gives the same bytes."""
    try:
        import google_crc32c
    except ImportError:
        return
    if google_crc32c.implementation != "c" or _CHECKSUMS:
        return
    from tensorboard.summary.writer import record_writer

    _CHECKSUMS.append(record_writer.masked_crc32c)
    record_writer.masked_crc32c = _masked_crc32c


def _disable_fast_checksums() -> None:
    from tensorboard.summary.writer import record_writer

    if _CHECKSUMS:
        record_writer.masked_crc32c = _CHECKSUMS.pop()


# ---- a profiler whose `profile` costs nothing -------------------------------------------------


def quiet_profiler():
    """When no profiler is asked for, Lightning's `PassThroughProfiler` still builds a
    generator-based context for every hook of every callback (several dozen a step); this
    one hands out one shared empty context. None when the speedup is off."""
    if "quiet_profiler" not in ACTIVE:
        return None
    from lightning.pytorch.profilers import PassThroughProfiler

    class QuietProfiler(PassThroughProfiler):
        quiet = contextlib.nullcontext()

        def profile(self, action_name: str) -> contextlib.AbstractContextManager:
            return self.quiet

    return QuietProfiler()


def _nothing(model: object = None) -> None:
    pass


# ---- freezing the other net with one list instead of a dict of every parameter ---------------


@contextlib.contextmanager
def _toggled_optimizer(self, optimizer) -> Iterator[None]:
    """Lightning's `toggled_optimizer`, with the same requires_grad states inside and after
    the block: only `optimizer`'s parameters get gradients, the other optimizers' trainable
    parameters are frozen and thawed after. Lightning builds a dict of every parameter and
    restores from it (20 us a toggle on the moons nets); this lists the others once."""
    inner = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer or not
    own = {id(p) for group in inner.param_groups for p in group["params"]}
    frozen = [
        p
        for other in self.trainer.optimizers
        if other is not inner
        for group in other.param_groups
        for p in group["params"]
        if p.requires_grad and id(p) not in own
    ]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)


def _enable_own_toggle(model: object) -> None:
    from genlab.models.base import GenerativeModule

    GenerativeModule.toggled_optimizer = _toggled_optimizer


def _disable_own_toggle() -> None:
    from genlab.models.base import GenerativeModule

    if "toggled_optimizer" in GenerativeModule.__dict__:
        del GenerativeModule.toggled_optimizer


# ---- deterministic mode without the NaN fills -------------------------------------------------

_FILL: list[bool] = []


def _enable_no_fill(model: object) -> None:
    """Deterministic mode (`trainer.deterministic`, on for CPU runs) also fills every new
    tensor with NaN, to expose reads of uninitialised memory; correct code never reads them."""
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
            "metric_moves",
            "lightning",
            ("2.6", "2.7"),
            "self.log skips moving a metric that is already on the value's device",
            _enable_metric_moves,
            _disable_metric_moves,
        ),
        Speedup(
            "direct_updates",
            "lightning",
            ("2.6", "2.7"),
            "each update calls torch's backward and step where no hook listens",
            _enable_direct_updates,
            _disable_direct_updates,
        ),
        Speedup(
            "plain_attributes",
            "lightning",
            ("2.6", "2.7"),
            "the hook name Lightning sets around every hook skips nn.Module's checks",
            _enable_plain_attributes,
            _disable_plain_attributes,
        ),
        Speedup(
            "stored_signature",
            "lightning",
            ("2.6", "2.7"),
            "training_step's signature, inspected every batch, is stored",
            _enable_stored_signature,
            _disable_stored_signature,
        ),
        Speedup(
            "fast_checksums",
            "tensorboard",
            ("2.15", "2.22"),
            "TensorBoard's event records are checksummed in C",
            _enable_fast_checksums,
            _disable_fast_checksums,
        ),
        Speedup(
            "quiet_profiler",
            "lightning",
            ("2.6", "2.7"),
            "no profiler asked for: a free profile context for every hook",
            _nothing,
            _nothing,
        ),
        Speedup(
            "own_toggle",
            "lightning",
            ("2.6", "2.7"),
            "the other net is frozen from one list of its parameters",
            _enable_own_toggle,
            _disable_own_toggle,
        ),
        Speedup(
            "no_fill",
            "torch",
            ("2.3", "2.16"),
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
def applied(selection: bool | Iterable[str] | None, model: object) -> Iterator[frozenset[str]]:
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
            SPEEDUPS[name].enable(model)
        ACTIVE = frozenset(names)
        yield ACTIVE
    finally:
        ACTIVE = frozenset()
        for name in reversed(names):
            SPEEDUPS[name].disable()


def is_on(name: str) -> bool:
    return name in ACTIVE


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


