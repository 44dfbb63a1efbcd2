"""Checkpoints: written atomically, read without running anything inside them, and checked
against the model before use.

A checkpoint is a pickle, and a pickle can name any function to call while it loads. genlab
loads every checkpoint (sampling, resuming, evaluating) with `torch.load(weights_only=True)`:
tensors, numbers, strings and plain containers, which is all genlab writes; a file that
needs anything else is refused before any of it runs.
"""

import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genlab.errors import CheckpointError

TEMPORARY = ".{name}.{pid}.tmp"  # beside the checkpoint it becomes, so the rename stays local


def existing(path: str | Path) -> Path:
    """`path`, or a one-line CheckpointError when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass the .ckpt file of a run, "
            f"e.g. outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    return path


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """`torch.load(weights_only=True)`, with its failures as one-line CheckpointErrors."""
    path = existing(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower():
            raise unreadable(path, exc) from None
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} holds more than tensors and plain values{what}, so loading it could run "
            f"code; genlab loads checkpoints with weights_only=True and refused it: use a "
            f"checkpoint written by genlab-train"
        ) from None
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise unreadable(path, exc) from None


def unreadable(path: Path, exc: Exception) -> CheckpointError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CheckpointError(
        f"cannot read checkpoint {path} (truncated or not a checkpoint: {reason}); "
        f"pass another .ckpt from the run's checkpoints/ folder"
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `genlab-train`, or a one-line CheckpointError."""
    checkpoint = read_checkpoint(path)
    if (
        not isinstance(checkpoint, dict)
        or "state_dict" not in checkpoint
        or "genlab" not in checkpoint
    ):
        raise CheckpointError(
            f"{path} is not a genlab checkpoint (no model config inside); "
            f"pass a .ckpt written by genlab-train"
        )
    return checkpoint


def check_compatible(checkpoint: dict[str, Any], model: torch.nn.Module, path: str | Path) -> None:
    """Raise a CheckpointError if the checkpoint's weights do not fit `model`."""
    expected = model.state_dict()
    found = checkpoint["state_dict"]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        k for k in set(expected) & set(found) if expected[k].shape != found[k].shape
    )
    if missing or unexpected or mismatched:
        detail = (missing or unexpected or mismatched)[0]
        saved = checkpoint["genlab"].get("choices", {})
        hint = (
            " ".join(f"{k}={v}" for k, v in saved.items()) or "the config of the run that wrote it"
        )
        raise CheckpointError(
            f"{path} was written by a different model ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(mismatched)} reshaped weights, e.g. '{detail}'); resume with {hint}"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer and reader, made safe for shared filesystems and
    shared checkpoints.

    Writes go to a temporary file in the checkpoint's own folder, are flushed to disk, then
    renamed over the old file: a kill at any moment leaves the old checkpoint or the new
    one, never a torn one (Lightning's own writer moves a file from the temporary folder,
    which is a copy when that lies on another filesystem). Reads are `weights_only=True`.
    Remote paths (`s3://...`) keep Lightning's own writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_atomically(checkpoint, Path(path))

    def load_checkpoint(
        self, path: Any, map_location: Callable | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path, map_location)


def save_atomically(payload: Any, path: Path) -> None:
    """`torch.save(payload, path)` through a flushed temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(TEMPORARY.format(name=path.name, pid=os.getpid()))
    try:
        with open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the system allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_torn_writes(folder: Path) -> list[Path]:
    """Delete the temporary files of writes that were killed (the run's lock is held, so
    no other process is writing); return them."""
    torn = sorted(folder.glob(TEMPORARY.format(name="*", pid="*"))) if folder.is_dir() else []
    for path in torn:
        path.unlink(missing_ok=True)
    return torn
