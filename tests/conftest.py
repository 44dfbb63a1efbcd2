"""Fixtures: one data folder for the session, and training in-process into a tmp_path."""

import os
import tempfile
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from helpers import compose_train

# One data folder for the whole session (in-process runs and subprocesses alike), so that
# the digit classifier behind the image metrics is trained once per dataset, not per test.
os.environ.setdefault("GENLAB_DATA", tempfile.mkdtemp(prefix="genlab-data-"))


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
