"""Santurkar 2018's deep linear network: data, model and squared-error training."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from normlab.config import compose_config
from normlab.data import GaussianLinearDataModule
from normlab.errors import NormlabError
from normlab.models import DLN
from normlab.module import RegressionModule
from normlab.train import run


def test_gaussian_linear_data_is_a_fixed_linear_map() -> None:
    a, b = (
        GaussianLinearDataModule(data_seed=3, seed=0),
        GaussianLinearDataModule(data_seed=3, seed=9),
    )
    a.setup()
    b.setup()
    assert a.train_x.shape == (1000, 10) and a.test_x.shape == (1000, 10)
    torch.testing.assert_close(a.train_y, a.train_x @ a.A.T)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.A, b.A)  # independent of init seed
    other = GaussianLinearDataModule(data_seed=4)
    other.setup()
    assert not torch.equal(a.A, other.A)
    assert len(a.train_dataloader()) == 1  # full batch


def test_dln_structure_and_glorot_init() -> None:
    torch.manual_seed(0)
    model = DLN(norm={"name": "batch"})
    assert len(model.layers) == 25 and sorted(model.hidden_layers) == list(range(1, 25))
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(weights) == 25 and all(w.shape == (10, 10) for w in weights)
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    std = torch.cat([w.flatten() for w in weights]).std().item()
    assert std == pytest.approx((2 / 20) ** 0.5, rel=0.1)  # Glorot: sqrt(2 / (fan_in + fan_out))
    assert not isinstance(model.layers["layer25"], type(model.layers["layer1"]))  # no norm last


def test_squared_error_reductions() -> None:
    module = RegressionModule(DLN(depth=2), optimizer=torch.optim.SGD, reduction="sum")
    out, y = torch.ones(4, 10), torch.zeros(4, 10)
    assert module.loss(out, y).item() == 40.0
    module.reduction = "mean"
    assert module.loss(out, y).item() == 10.0
    with pytest.raises(NormlabError, match=r"module.reduction='max'.*\['sum', 'mean'\]"):
        RegressionModule(DLN(depth=2), optimizer=torch.optim.SGD, reduction="max")


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_dln_trains_at_the_papers_learning_rates(norm: str, tmp_path) -> None:
    for lr in (1e-6, 1e-7):
        overrides = [
            "data=gaussian_linear",
            "model=dln",
            "module=regression",
            f"norm={norm}",
            f"optim.lr={lr}",
            "logger=none",
            "trainer.max_steps=300",
            "trainer.val_check_interval=100",
            "trainer.log_every_n_steps=10",
            "trainer.enable_progress_bar=false",
            "trainer.enable_checkpointing=false",
            f"paths.runs_dir={tmp_path}",
        ]
        result = run(compose_config(overrides), tmp_path / f"{norm}-{lr}", overrides)
        assert result.status == "finished"
        m = pd.read_csv(tmp_path / f"{norm}-{lr}" / "metrics.csv")
        loss = m[m.metric == "train/loss"].set_index("step").value
        assert loss.iloc[-1] < 0.9 * loss.iloc[0]  # the loss falls, without blowing up
        assert sorted(m[m.metric == "test/loss"].step) == [100, 200, 300]
