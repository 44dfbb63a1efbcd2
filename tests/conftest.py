"""Fixtures: one data folder for the session, and training in-process into a tmp_path."""

import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from helpers import compose_train

# One data folder for the whole session (in-process runs and subprocesses alike, and every
# pytest-xdist worker of one run), so that the digit classifier behind the image metrics is
# trained once per dataset, not per test (its cache file is written atomically).
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if RUN_ID:
    shared = Path(tempfile.gettempdir()) / f"genlab-data-{RUN_ID}"
    shared.mkdir(exist_ok=True)
    os.environ.setdefault("GENLAB_DATA", str(shared))
else:
    os.environ.setdefault("GENLAB_DATA", tempfile.mkdtemp(prefix="genlab-data-"))

# Ctrl-C as a terminal has it: a background job of a non-interactive shell (`make test &`
# in a script) starts with SIGINT ignored, and the tests that press Ctrl-C in-process would
# then see nothing happen
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# `make test` runs two pytest workers on two cores: each trains with one thread, and so do
# the genlab-train processes the tests start (torch reads OMP_NUM_THREADS), so that the
# workers do not slow each other down
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def run_train(tmp_path):
    """Train in-process: run_train(["model=wgan", "debug=fdr"]) -> (metrics, output_dir)."""
    from genlab.train import train

    def _run(overrides: list[str], name: str = "run") -> tuple[dict, Path]:
        output_dir = tmp_path / name
        output_dir.mkdir(parents=True, exist_ok=True)
        cfg = compose_train(overrides, output_dir)
        return train(cfg), output_dir

    yield _run
    GlobalHydra.instance().clear()
