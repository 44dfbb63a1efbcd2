"""One process per run folder: `<run>/.lock`, taken before anything is written there.

The lock file holds its holder's PID, host and start time. A second process stops with one
line that names the holder; a lock left by a process that has died on this host is taken
over with a note. (On another host genlab cannot tell whether the holder lives: it says so
and names the file to delete.)
"""

import json
import logging
import os
import socket
import time
from pathlib import Path

from genlab.errors import ConfigError

log = logging.getLogger(__name__)
NAME = ".lock"


class RunLock:
    """`with RunLock(folder):` holds the folder's lock for the block."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / NAME
        self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after taking over a stale lock
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.take_over_if_stale()
                continue
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            with os.fdopen(descriptor, "w") as file:
                json.dump(holder, file)
            self.held = True
            return
        raise ConfigError(f"cannot take the lock {self.path}; delete it if no run is using it")

    def take_over_if_stale(self) -> None:
        holder = read_holder(self.path)
        pid, host = holder.get("pid"), holder.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not alive(pid):
            log.warning("took over %s from process %s, which has ended", self.path, pid)
            self.path.unlink(missing_ok=True)
            return
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        where = f"process {pid} on {host}" if pid else "another process"
        elsewhere = "" if host == socket.gethostname() else " (delete it if that process is gone)"
        raise ConfigError(
            f"{self.path.parent} is in use by {where} since {since}{elsewhere}: one run per "
            f"folder; wait for it, or choose another hydra.run.dir"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def alive(pid: int) -> bool:
    """Whether a process with this PID runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
