"""Whether the epoch now ending is a run's last, however the run ends."""

import lightning as L


def fit_ends_here(trainer: L.Trainer) -> bool:
    """True in the run's last epoch: its max_epochs, a stop asked for by a callback
    (trainer.max_time's timer, early stopping) or max_steps reached, so that a run cut short
    is still scored and drawn as it ends. Also true in `on_train_end`."""
    return bool(
        trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        or trainer.fast_dev_run
        or trainer.should_stop
        or 0 < (trainer.max_steps or -1) <= trainer.global_step
    )
