"""Does a WGAN critic's Wasserstein estimate track sample quality?

Reads a run's TensorBoard events and correlates, epoch by epoch, the mean of the logged
`wasserstein` estimate with `eval/fd` (lower is better for both).

    genlab-train experiment=wgan_gp_mnist_mini
    python bench/critic_vs_fd.py outputs/<date>/<time>/tensorboard
"""

import sys
from bisect import bisect_right

import numpy as np
from scipy.stats import pearsonr, spearmanr
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(folder: str) -> None:
    events = EventAccumulator(folder, size_guidance={"scalars": 0})
    events.Reload()
    epoch_marks = sorted((e.step, int(e.value)) for e in events.Scalars("epoch"))
    steps = [step for step, _ in epoch_marks]

    def epoch_of(step: int) -> int:
        return epoch_marks[max(bisect_right(steps, step) - 1, 0)][1]

    estimates: dict[int, list[float]] = {}
    for scalar in events.Scalars("wasserstein"):
        estimates.setdefault(epoch_of(scalar.step), []).append(scalar.value)
    fd = {epoch_of(s.step): s.value for s in events.Scalars("eval/fd")}
    epochs = sorted(set(estimates) & set(fd))
    w = np.array([np.mean(estimates[e]) for e in epochs])
    f = np.array([fd[e] for e in epochs])
    for epoch, a, b in zip(epochs, w, f, strict=True):
        print(f"epoch {epoch:3d}  wasserstein {a:9.3f}  fd {b:9.2f}")
    print(
        f"pearson {pearsonr(w, f)[0]:.3f}  spearman {spearmanr(w, f)[0]:.3f}  over {len(epochs)} epochs"
    )


if __name__ == "__main__":
    main(sys.argv[1])
