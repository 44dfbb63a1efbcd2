"""The benchmark harness runs end to end (its speed is measured by `make bench`, not here)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_overhead_quick_runs_both_loops_with_finite_losses(tmp_path):
    out = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "<!-- overhead-cpu -->" in text and "Machine:" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "steps/s" not in line]
    assert len(rows) == 4  # moons GAN, DCGAN, WGAN-GP, VAE
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        genlab, plain = float(cells[2]), float(cells[3])
        assert genlab > 0 and plain > 0, row  # both loops ran (losses checked inside)
        assert re.fullmatch(r"\d+\.\d{3}", cells[6]), row
    # a second run replaces its own section and keeps the others
    out.write_text(text + "\n<!-- other -->\nkept\n<!-- /other -->\n")
    again = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--only", "VAE",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    updated = out.read_text()
    assert updated.count("<!-- overhead-cpu -->") == 1 and "kept" in updated
    assert "VAE" in updated and "moons" not in updated
