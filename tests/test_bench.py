"""The benchmark harness runs end to end (its speed is measured by `make bench`, not here)."""

import contextlib
import io
import re
import runpy
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).parent.parent


def run_script(name: str, *args: str) -> str:
    """`python bench/NAME ARGS` in this process (no interpreter start); its stdout."""
    out, argv, path = io.StringIO(), sys.argv, list(sys.path)
    try:
        sys.argv = [str(ROOT / "bench" / name), *args]
        with contextlib.redirect_stdout(out):
            runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
        GlobalHydra.instance().clear()
    return out.getvalue()


def tables(text: str) -> list[list[list[str]]]:
    """The body rows of each markdown table in `text`, as lists of cells."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("| workload"):
            current = []
            found.append(current)
        elif line.startswith("|") and current is not None and not line.startswith("|---"):
            current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif not line.startswith("|"):
            current = None
    return found


def test_overhead_quick_runs_both_loops_with_finite_losses(tmp_path):
    out = tmp_path / "results.md"
    run_script("overhead.py", "--quick", "--out", str(out))
    text = out.read_text()
    assert "<!-- overhead-cpu -->" in text and "Machine:" in text
    ratios, split = tables(text)
    assert len(ratios) == len(split) == 4  # moons GAN, DCGAN, WGAN-GP, VAE
    for row in ratios:
        genlab, plain = float(row[2]), float(row[3])
        assert genlab > 0 and plain > 0, row  # both loops ran (losses checked inside)
        assert re.fullmatch(r"\d+\.\d{3}", row[6]), row
        low, high = (float(v) for v in re.fullmatch(r"(\d+\.\d\d)-(\d+\.\d\d)", row[7]).groups())
        assert 0 < low <= high, row  # each round's ratio to the plain round beside it
    for row in split:
        # where genlab's time goes: a plain step, a genlab step and its parts, which add up to
        # it (one round: no medians in between)
        plain_step, step, inside, between, turnover = (float(v) for v in row[2:7])
        assert plain_step > 0 and inside > 0 and between >= 0 and turnover > 0, row
        assert abs(inside + between + turnover - step) <= 0.02 * step + 0.02, row
        assert float(row[7]) > 0 and float(row[8]) > 0, row  # typical step, one epoch's turnover


def test_a_benchmark_rewrites_its_own_section_and_keeps_the_others(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from overhead import write_section
    finally:
        sys.path.remove(str(ROOT / "bench"))
    out = tmp_path / "results.md"
    write_section(out, "overhead-cpu", "first")  # a new file: a heading and the section
    write_section(out, "other", "kept")
    write_section(out, "overhead-cpu", "second")
    text = out.read_text()
    assert text.startswith("# genlab benchmarks")
    assert text.count("<!-- overhead-cpu -->") == 1 and "second" in text and "first" not in text
    assert "<!-- other -->\nkept\n<!-- /other -->" in text


def test_compare_alternates_genlab_with_and_without_overrides(tmp_path):
    stdout = run_script(
        "overhead.py", "--quick", "--only", "VAE", "--compare", "model.optimizer.fused=null",
        "--out", str(tmp_path / "untouched.md"),
    )  # fmt: skip
    (line,) = [line for line in stdout.splitlines() if "default / with" in line]
    default, changed = (float(v) for v in re.findall(r"([\d.]+) steps/s", line))
    assert default > 0 and changed > 0, line
    assert re.search(r"rounds \[[\d.]+\] vs \[[\d.]+\]", line), line  # --quick: one round
    assert not (tmp_path / "untouched.md").exists()  # an A/B writes no results


def test_floor_quick_times_lightning_and_the_loop_for_each_update_count(tmp_path):
    """bench/floor.py: Lightning's per-batch cost for 0, 1, 2 and 6 optimizer steps a batch
    (the bench itself checks that each batch took that many steps), and with --parts what
    genlab's logger, progress bar, guard and run record add to it."""
    out = tmp_path / "results.md"
    run_script("floor.py", "--quick", "--parts", "--out", str(out))
    text = out.read_text()
    assert "<!-- floor-cpu -->" in text and "40 batches an epoch" in text
    rows = [line.strip("|").split("|") for line in text.splitlines() if re.match(r"\| \d", line)]
    assert [int(row[0]) for row in rows] == [0, 1, 2, 6]
    for updates, loop, lightning, floor in ((int(v) for v in row) for row in rows):
        assert loop > 0 and lightning > 0, (updates, loop, lightning)
        assert abs(lightning - loop - floor) <= 1, (updates, loop, lightning, floor)
    # --parts: genlab's default pieces added to the one-update Trainer, one by one and all
    parts = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    parts = {
        row[0].strip(): (int(row[1]), int(row[2])) for row in parts if row[2].strip()[0] in "+-"
    }
    assert list(parts) == [
        "nothing", "TensorBoard logger", "progress bar", "divergence guard", "run record", "all"
    ]  # fmt: skip
    assert parts["nothing"][1] == 0
    assert all(
        us > 0 and abs(us - parts["nothing"][0] - added) <= 1 for us, added in parts.values()
    )


def test_sampling_bench_times_both_autoregressive_models(tmp_path):
    out = tmp_path / "results.md"
    run_script("sampling.py", "--quick", "--out", str(out))
    text = out.read_text()
    assert "<!-- sampling-cpu -->" in text and "8 x 8 images" in text
    rows = [line.strip("|").split("|") for line in text.splitlines() if re.match(r"\| \d", line)]
    assert [int(row[0]) for row in rows] == [64, 1]
    for _, cnn, rnn, ratio in rows:
        assert float(cnn) > 0 and float(rnn) > 0
        assert float(ratio.strip().rstrip("x")) == pytest.approx(float(cnn) / float(rnn), rel=0.1)


def test_data_bench_times_the_cached_folder_against_torchvision():
    """A small folder end to end: the first run builds the cache, the second finds it; the
    table has every row, with positive rates and an in-memory set at its uint8 size."""
    stdout = run_script("data.py", "--images", "400", "--vision-batches", "3", "--print")
    rows = {row[0]: row for row in tables(stdout.replace("| in-memory set", "| workload"))[0]}
    assert set(rows) == {
        "genlab, first run (builds the cache)",
        "genlab, second run (cache found, read from disk)",
        "torchvision ImageFolder + DataLoader(num_workers=2)",
    }
    assert all(float(row[3].replace(",", "")) > 0 for row in rows.values())
    memory = {row[0]: row for row in tables(stdout.replace("| in-memory set", "| workload"))[1]}
    assert memory["mnist_mini"][3] == memory["cifar-size"][3] == "1.00"


def test_vae_yardstick_quick_trains_and_bounds_the_held_out_digits():
    text = run_script("vae_yardstick.py", "--quick")
    elbo, iwae = (
        float(v) for v in re.search(r"ELBO (\S+) nats, IWAE\(k=10\) (\S+)", text).groups()
    )
    assert -300 < elbo < iwae < 0, text  # one epoch: a bound, tighter with k
