"""The model contract (genlab/contract.py): what each family offers the callbacks, and what
happens to a model that breaks it."""

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from genlab.build import instantiate_model
from genlab.callbacks.guard import DivergenceGuard
from genlab.contract import (
    Figures,
    Guarded,
    HeldOutLikelihood,
    LossCharts,
    Sampler,
    Translator,
    translates,
)
from genlab.models.base import GenerativeModule
from genlab.train import train

from helpers import compose_train

CAPABILITIES = (Sampler, Translator, HeldOutLikelihood, Figures, LossCharts, Guarded)
EXPECTED = {
    "gan": {Sampler, LossCharts, Guarded},
    "acgan": {Sampler, LossCharts, Guarded},
    "vae": {Sampler, HeldOutLikelihood, Figures, LossCharts, Guarded},
    "pixelcnn": {Sampler, HeldOutLikelihood, LossCharts, Guarded},
    "pix2pix": {Translator, Figures, LossCharts, Guarded},
    "cyclegan": {Translator, Figures, LossCharts, Guarded},
}
DATA = {"gan": "moons", "acgan": "digits", "vae": "mnist_mini", "pixelcnn": "mnist_mini",
        "pix2pix": "digits_edges", "cyclegan": "digits_inverted"}  # fmt: skip


@pytest.mark.parametrize("model", list(EXPECTED))
def test_each_family_offers_what_its_callbacks_use(model, tmp_path):
    built = instantiate_model(
        compose_train([f"model={model}", f"data={DATA[model]}"], tmp_path).model
    )[0]
    offered = {capability for capability in CAPABILITIES if isinstance(built, capability)}
    assert offered == EXPECTED[model]
    assert translates(type(built)) == (Translator in EXPECTED[model])
    assert built.loss_charts  # every family draws its losses together


class Forgetful(GenerativeModule):
    """A model whose training_step never hands the guard its losses."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.weight = nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        self.optimize((self.weight - batch[0].mean()) ** 2, self.optimizers())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(model: L.LightningModule) -> None:
    data = DataLoader(TensorDataset(torch.randn(12, 2), torch.zeros(12)), batch_size=4)
    trainer = L.Trainer(
        max_epochs=1, callbacks=[DivergenceGuard(check_every_n_steps=1)], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=data)


def test_a_model_that_forgets_its_guard_values_is_stopped_at_the_first_check():
    with pytest.raises(RuntimeError, match="Forgetful.training_step left guard_values unset"):
        fit(Forgetful())


def test_the_guard_refuses_a_model_outside_the_contract():
    class Foreign(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(()))

        def training_step(self, batch, batch_idx):
            return (self.weight - batch[0].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="Foreign gives the divergence guard nothing to read"):
        fit(Foreign())


def test_the_smallest_model_of_the_docs_trains_and_samples(tmp_path, monkeypatch):
    """docs/adding-a-model.md's example, as written there, trains on the moons with every
    default callback (pictures, metrics, guard, checkpoints) and fits the data's mean."""
    page = (Path(__file__).parents[1] / "docs" / "adding-a-model.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    config = OmegaConf.to_container(
        OmegaConf.create(re.search(r"```yaml\n(.*?)```", page, re.S).group(1))
    )
    (tmp_path / "doc_example.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_train(["data=moons", "trainer.max_epochs=2", "trainer.limit_train_batches=50"],
                        tmp_path / "run")  # fmt: skip
    config["_target_"] = "doc_example.DiagonalGaussian"
    config["optimizer"] = dict(cfg.model.optimizer_g)  # the adam of model/optimizer/
    with open_dict(cfg):
        cfg.model = OmegaConf.create({k: v for k, v in config.items() if k != "defaults"})
    metrics = train(cfg)
    assert metrics["loss/nll"] < 2.0 and metrics["eval/fd"] < 0.5
    assert (tmp_path / "run" / "samples" / "last.png").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
