"""`key=value` options of the console scripts that are not Hydra apps (genlab-sample,
genlab-eval): parsed with OmegaConf's dotlist, checked against the script's defaults."""

import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from genlab.errors import ConfigError, require, user_error

Result = TypeVar("Result")


def parse_options(argv: list[str], defaults: dict, usage: str) -> dict:
    """`defaults` updated by `argv`; an unknown option, or no `ckpt`, is one line."""
    try:
        overrides = OmegaConf.from_dotlist(argv)
    except OmegaConfBaseException as error:
        raise ConfigError(f"cannot parse {argv}: {error}; write key=value, e.g. n=1000") from None
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]}; the options are {', '.join(defaults)}")
    options = defaults | OmegaConf.to_container(overrides)
    require(options["ckpt"] is not None, f"pass the checkpoint: {usage}")
    return options


def run_script(script: str, work: Callable[[list[str]], Result], argv: list[str] | None) -> Result:
    """`work(argv)` (the command line's arguments by default); a user's error becomes one
    line `SCRIPT: error: ...` on stderr and exit status 2, anything else a traceback."""
    try:
        return work(sys.argv[1:] if argv is None else argv)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        print(f"{script}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
