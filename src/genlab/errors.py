"""User-facing errors: one line that says what is wrong and how to fix it.

The entry points (`genlab-train`, `genlab-sample`) print a `GenlabError` as a single line
and exit with status 2 instead of showing a stack trace.
"""


class GenlabError(Exception):
    """An error caused by the user's input, with a message that names the fix."""


class ConfigError(GenlabError, ValueError):
    """A config value that cannot work (a bad learning rate, a size the nets cannot take)."""


class DataError(GenlabError):
    """A dataset that is missing, empty or does not fit the model."""


class CheckpointError(GenlabError):
    """A checkpoint that is missing, unreadable or from another model."""


class DivergenceError(GenlabError):
    """Training blew up (a NaN or Inf loss) or collapsed (D saturated for too long)."""


def require(condition: bool, message: str, error: type[GenlabError] = ConfigError) -> None:
    """Raise `error(message)` unless `condition` holds."""
    if not condition:
        raise error(message)


def user_error(error: BaseException) -> GenlabError | None:
    """The GenlabError behind `error`, if any (Hydra wraps errors raised in constructors)."""
    while error is not None:
        if isinstance(error, GenlabError):
            return error
        error = error.__cause__ or error.__context__
    return None


def check_num_classes(num_classes: int | None) -> None:
    """A class count of None means the data config does not know its classes."""
    require(
        num_classes is not None,
        "model.num_classes is null because the data has no known classes; set data.num_classes "
        "or use an unconditional model (e.g. model=dcgan)",
    )
    require(num_classes >= 0, f"model.num_classes must be >= 0 (got {num_classes})")
