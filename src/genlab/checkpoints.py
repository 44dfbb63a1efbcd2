"""Reading genlab checkpoints with errors that say what went wrong."""

from pathlib import Path
from typing import Any

import torch

from genlab.errors import CheckpointError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by `genlab-train`, or raise a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass the .ckpt file of a run, "
            f"e.g. outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not a checkpoint: {reason}); "
            f"pass another .ckpt from the run's checkpoints/ folder"
        ) from None
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
