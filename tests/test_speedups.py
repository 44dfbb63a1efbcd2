"""genlab/speedups.py: each shortcut through a library's internals changes no number, is on
only while a run fits, and switches itself off outside the versions it was tested with."""

import logging
from dataclasses import replace

import lightning as L
import pytest
import torch
from torch import nn

from genlab import speedups
from genlab.build import trainer as build_trainer
from genlab.errors import ConfigError
from genlab.models.base import GenerativeModule

from helpers import compose_train, final_state


def checkpoint(folder):
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=wgan_gp", "data=ring", "trainer.limit_train_batches=4"],
        ["experiment=vae_mnist_mini", "trainer.limit_train_batches=6"],
    ],
    ids=["wgan_gp", "vae"],
)
def test_a_run_ends_the_same_with_and_without_speedups(overrides, run_train, monkeypatch):
    """The same weights, optimizer states and step count, bit for bit; and with them on, the
    updates did skip Lightning's hooks (the speedups were at work)."""
    direct = []
    step = speedups.step
    monkeypatch.setattr(speedups, "step", lambda optimizer: direct.append(1) or step(optimizer))
    short = [*overrides, "trainer.max_epochs=2", "~callbacks.sample_quality",
             "trainer.log_every_n_steps=2"]  # fmt: skip
    _, fast = run_train([*short, "speedups=true"], name="fast")
    assert direct, "the direct updates were not used"
    updates = len(direct)
    _, plain = run_train([*short, "speedups=false"], name="plain")
    assert len(direct) == updates  # none with speedups=false
    fast, plain = checkpoint(fast), checkpoint(plain)
    assert fast["global_step"] == plain["global_step"] == updates
    assert fast["state_dict"].keys() == plain["state_dict"].keys()
    for name, value in fast["state_dict"].items():
        assert torch.equal(value, plain["state_dict"][name]), name
    for mine, theirs in zip(fast["optimizer_states"], plain["optimizer_states"], strict=True):
        for key, state in mine["state"].items():
            for name, value in state.items():
                assert torch.equal(value, theirs["state"][key][name]), (key, name)


def test_speedups_are_on_inside_the_block_and_undone_after_it():
    fill = torch.utils.deterministic.fill_uninitialized_memory
    assert fill is True  # torch's default
    with speedups.applied(True) as active:
        assert active == {"direct_updates", "no_fill"} == speedups.ACTIVE
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert speedups.ACTIVE == frozenset()
    assert torch.utils.deterministic.fill_uninitialized_memory is True
    with speedups.applied(["direct_updates"]) as active:
        assert active == {"direct_updates"}
        assert torch.utils.deterministic.fill_uninitialized_memory is True
    with pytest.raises(ValueError), speedups.applied(True):  # undone on errors too
        raise ValueError
    assert speedups.ACTIVE == frozenset()
    assert torch.utils.deterministic.fill_uninitialized_memory is True


def test_outside_its_tested_versions_a_speedup_stays_off_with_one_warning(monkeypatch, caplog):
    old = replace(speedups.SPEEDUPS["direct_updates"], tested=("0.1", "0.2"))
    monkeypatch.setitem(speedups.SPEEDUPS, "direct_updates", old)
    with caplog.at_level(logging.WARNING, logger="genlab.speedups"):
        with speedups.applied(True) as active:
            assert active == {"no_fill"}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith(
        "speedup direct_updates is off: tested with lightning 0.1 to 0.2, found 2."
    )


def test_the_setting_names_all_none_or_some():
    assert speedups.selected(True) == list(speedups.SPEEDUPS) == ["direct_updates", "no_fill"]
    assert speedups.selected(False) == [] and speedups.selected(None) == []
    assert speedups.selected(["no_fill"]) == ["no_fill"]
    with pytest.raises(ConfigError, match="speedups=fast is not a speedup; use speedups=true"):
        speedups.selected(["fast"])


class UpdateListener(L.Callback):
    """Counts Lightning's hooks around each update. Listening to them turns the direct
    updates off, so a run with this callback takes Lightning's own path."""

    latest = None

    def __init__(self) -> None:
        self.calls = {"before backward": 0, "after backward": 0, "before step": 0}
        UpdateListener.latest = self

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls["before backward"] += 1

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls["after backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls["before step"] += 1


def test_a_callback_that_listens_to_the_updates_hears_every_one(run_train):
    """With the speedups on, a callback on Lightning's update hooks turns the direct path
    off: it hears all 48 updates, and the run ends as without it."""
    short = ["model=wgan_gp", "data=ring", "trainer.limit_train_batches=4",
             "trainer.max_epochs=2", "~callbacks.sample_quality"]  # fmt: skip
    _, direct = run_train(short, name="direct")
    _, heard = run_train([*short, f"+callbacks.hear._target_={__name__}.UpdateListener"], "heard")
    updates = 2 * 4 * 6  # epochs x batches x (five critic steps and G's)
    assert UpdateListener.latest.calls == dict.fromkeys(UpdateListener.latest.calls, updates)
    direct, heard = final_state(direct), final_state(heard)
    assert all(torch.equal(value, heard[name]) for name, value in direct.items())


@pytest.mark.parametrize(
    "change",
    ["nothing", "profiler asked for", "DDP", "a module hook", "a raw torch optimizer", "off"],
)
def test_direct_updates_only_where_nothing_can_tell(change, tmp_path):
    from lightning.pytorch.core.optimizer import LightningOptimizer

    class Model(GenerativeModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.weight = nn.Parameter(torch.zeros(()))

    class Listening(Model):
        def on_after_backward(self) -> None:
            pass

    cfg = compose_train(["model=gan", "data=moons"], tmp_path)
    if change == "profiler asked for":
        cfg.trainer.profiler = "simple"
    if change == "DDP":
        cfg.trainer.update(accelerator="cpu", devices=2, strategy="ddp")
    model = Listening() if change == "a module hook" else Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if change != "a raw torch optimizer":
        optimizer = LightningOptimizer(optimizer)
    with speedups.applied(change != "off"):
        assert not speedups.updates_directly(model, optimizer)  # no trainer yet
        model.trainer = build_trainer(cfg, [], [])
        expected = change == "nothing"
        assert speedups.updates_directly(model, optimizer) == expected
        assert speedups.updates_directly(model, optimizer) == expected  # remembered
        if change == "nothing":  # a new trainer is asked anew
            cfg.trainer.profiler = "simple"
            model.trainer = build_trainer(cfg, [], [])
            assert not speedups.updates_directly(model, optimizer)
