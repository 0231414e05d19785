"""The model contract and the multilevel strategy's interface, used from outside the suite."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "disabled")

from bench_mlkan import KAN  # noqa: E402
from bench_mlkan.config import ConfigError, RunConfig  # noqa: E402
from bench_mlkan.contracts import ModelContractError, check_model  # noqa: E402
from bench_mlkan.engine import train  # noqa: E402
from bench_mlkan.models import MODELS  # noqa: E402
from bench_mlkan.multilevel import MultilevelStrategy  # noqa: E402
from bench_mlkan.tasks import FunctionRegression  # noqa: E402


class Host(L.LightningModule):
    """A user's own LightningModule: only model, level and current_loss()."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = KAN([1, 2, 1], grid_size=3, degree=2, squash="tanh").double()
        self.level = 0
        self.x = torch.linspace(-1, 1, 50, dtype=torch.float64).unsqueeze(1)
        self.y = torch.sin(3 * self.x)

    def loss(self):
        return ((self.model(self.x) - self.y) ** 2).mean()

    def current_loss(self) -> float:
        return float(self.loss())

    def training_step(self, batch, batch_idx):
        return self.loss()

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=1e-2)

    def train_dataloader(self):
        return torch.utils.data.DataLoader([0], batch_size=None)


def test_multilevel_strategy_drives_a_users_own_module():
    host, strategy = Host(), MultilevelStrategy([3, 3, 3])
    trainer = L.Trainer(max_epochs=9, callbacks=[strategy], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(host)
    assert host.level == 2 and host.model.grid_size == 12
    assert [r["level"] for r in strategy.refinements] == [1, 2]
    for r in strategy.refinements:
        assert r["exact"] and r["rel_change"] <= 1e-12
    # the optimizer trains the refined model's parameters
    params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert params == {id(p) for p in host.model.parameters()}


class Bare(nn.Module):
    def __init__(self, widths, input_domain=None):
        super().__init__()
        self.lin = nn.Linear(widths[0], widths[-1])

    def forward(self, x):
        return self.lin(x)


class Costed(Bare):
    def macs_per_point(self) -> int:
        return self.lin.in_features * self.lin.out_features


def test_model_contract_names_what_is_missing():
    with pytest.raises(ModelContractError, match="lacks macs_per_point"):
        check_model(Bare([2, 1]), multilevel=False)
    check_model(Costed([2, 1]), multilevel=False)
    with pytest.raises(ModelContractError, match="refined, grid_size, exact_refinement"):
        check_model(Costed([2, 1]), multilevel=True)
    with pytest.raises(ModelContractError, match="prolong_parameter_tensor"):
        check_model(Costed([2, 1]), multilevel=False, carry_moments=True)
    check_model(KAN([1, 2, 1], 3, 3), multilevel=True, carry_moments=True)


@pytest.fixture
def user_models():
    MODELS.register("test_bare", Bare)
    MODELS.register("test_costed", Costed)
    yield
    del MODELS["test_bare"], MODELS["test_costed"]


def _cfg(model: str, schedule: list[int]) -> RunConfig:
    return RunConfig(task="function_regression", model=model, model_options={"widths": [2, 1]},
                     schedule=schedule, progress=False)  # fmt: skip


def test_a_user_model_trains_and_a_contract_breach_fails_before_training(user_models):
    task = FunctionRegression(lambda p: p[:, :1], [(-1.0, 1.0), (-1.0, 1.0)], n_train=16,
                              n_test=8, eval_points_per_dim=3)  # fmt: skip
    ok = train(_cfg("test_costed", [3]), task=task)
    assert ok.status == "ok" and ok.work_macs == pytest.approx(3 * 16 * 2 * 3)
    with pytest.raises(ConfigError, match="lacks macs_per_point"):
        train(_cfg("test_bare", [3]), task=task)
    with pytest.raises(ConfigError, match="cannot train on more than one level"):
        train(_cfg("test_costed", [3, 3]), task=task)
