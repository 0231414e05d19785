"""Training engine: exact refinement, equal work, bit-identical resume, divergence, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

os.environ.setdefault("WANDB_MODE", "disabled")

from toy import small_task  # noqa: E402

from bench_mlkan import KAN, MLP, MultichannelMLP  # noqa: E402
from bench_mlkan.config import ConfigError, RunConfig  # noqa: E402
from bench_mlkan.engine import build_model, plan_schedule, train  # noqa: E402
from bench_mlkan.tasks import FunctionRegression  # noqa: E402
from bench_mlkan.work import forward_macs_per_point  # noqa: E402


def small_config(**changes) -> RunConfig:
    base = RunConfig(
        task="function_regression",
        model="kan",
        model_options={"widths": [2, 3, 1], "grid_size": 3, "degree": 3, "squash": "tanh"},
        schedule=[4, 4, 4],
        optimizer="adam",
        lr=1e-2,
        lr_start=1e-4,
        warmup_steps=3,
        progress=False,
    )
    return base.replace(**changes)


def params_of(result) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result.model.parameters()]


@pytest.mark.parametrize("model", ["kan", "mcmlp"])
def test_loss_is_unchanged_by_every_refinement(model):
    result = train(small_config(model=model), task=small_task())
    assert result.status == "ok"
    assert [r["level"] for r in result.refinements] == [1, 2]
    assert [r["step"] for r in result.refinements] == [4, 8]
    for r in result.refinements:
        assert abs(r["loss_after"] - r["loss_before"]) <= 1e-12 * abs(r["loss_before"])
        assert set(r["level_end_metrics"]) >= {"rel_l2", "max_abs", "mse"}
    # grid 3 -> 6 -> 12, cubic: 9 edges x (n + 3) coefficients per level
    assert result.params_per_level == {0: 54, 1: 81, 2: 135}
    assert result.params == 135
    assert [h["level"] for h in result.history] == [0] * 4 + [1] * 4 + [2] * 4


def test_paper_regression_budgets_cost_the_same_work():
    task = small_task(16)
    works = {}
    for name, schedule in {
        "coarse": [128, 0, 0, 0],
        "fine": [0, 0, 0, 16],
        "ml": [32, 16, 8, 4],
    }.items():
        cfg = small_config(
            schedule=schedule, model_options={"widths": [2, 3, 1], "grid_size": 5, "degree": 3}
        )
        result = train(cfg, task=task)
        works[name] = result.work
        assert result.steps == sum(schedule)
    assert works == {"coarse": 128.0, "fine": 128.0, "ml": 128.0}


def test_budget_fractions_split_work_across_levels():
    cfg = small_config(
        budget_fractions=[0.25, 0.25, 0.25, 0.25],
        work_budget=128.0,
        model_options={"widths": [2, 3, 1], "grid_size": 5, "degree": 3},
    )
    assert plan_schedule(cfg.validate(), small_task(16)) == (0, [32, 16, 8, 4])


def test_work_budget_stops_the_run():
    result = train(small_config(schedule=[50], work_budget=7.0), task=small_task())
    assert result.steps == 7 and result.work == 7.0


def test_resume_is_bit_identical_before_and_after_refinements(tmp_path):
    task = small_task()
    reference = train(small_config(), task=task)
    ckpt = tmp_path / "ckpt"
    train(small_config(checkpoint_dir=str(ckpt), checkpoint_every=1), task=task)
    # step 4 and 8 are saved just before a refinement, 5 and 9 just after one
    for step in (2, 4, 5, 8, 9):
        resumed = train(small_config(resume_from=str(ckpt / f"step{step}.ckpt")), task=task)
        assert resumed.steps == reference.steps
        assert all(
            torch.equal(a, b) for a, b in zip(params_of(reference), resumed.model.parameters())
        )
        assert resumed.history == reference.history
        assert resumed.work == reference.work


def test_seeded_runs_are_bitwise_reproducible():
    task = small_task()
    a, b = (
        train(small_config(model="mcmlp"), task=task),
        train(small_config(model="mcmlp"), task=task),
    )
    assert all(torch.equal(x, y) for x, y in zip(params_of(a), b.model.parameters()))
    assert a.history == b.history
    c = train(small_config(model="mcmlp", seed=7), task=task)
    assert not all(torch.equal(x, y) for x, y in zip(params_of(a), c.model.parameters()))


class ExplodingTask(FunctionRegression):
    """Loss becomes inf from the ``explode_at``-th loss evaluation on."""

    def __init__(self, explode_at: int):
        base = small_task()
        self.__dict__.update(base.__dict__)
        self.calls, self.explode_at = 0, explode_at

    def loss_terms(self, model, batch, state, update_state=False):
        terms = super().loss_terms(model, batch, state, update_state)
        if update_state:
            self.calls += 1
        if self.calls > self.explode_at:
            terms["mse"] = terms["mse"] * float("inf")
        return terms


def test_diverging_loss_is_recorded_not_raised():
    result = train(small_config(), task=ExplodingTask(explode_at=6))
    assert result.status == "diverged"
    assert result.diverged["step"] == 6 and result.diverged["level"] == 1
    assert result.steps <= 7 and result.final_metrics == {}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schedule": [4, -1]}, "entries must be integers"),
        ({"schedule": [0, 0]}, "zero steps"),
        ({"schedule": []}, "non-empty"),
        (
            {"model": "mlp", "model_options": {"widths": [2, 8, 1]}, "schedule": [3, 3]},
            "cannot train on more than one level",
        ),
        ({"optimizer": "adagradd"}, "unknown optimizer 'adagradd'; known"),
        ({"task": "nope"}, "unknown task 'nope'; known"),
        ({"lr": -1.0}, "lr: must be positive"),
        ({"precision": "16"}, "precision"),
        ({"budget_fractions": [0.5, 0.2], "work_budget": 10.0}, "sum to 1"),
        ({"budget_fractions": [0.5, 0.5]}, "positive work_budget"),
        ({"model_options": {"widths": [2, 3, 1], "degree": 3}}, "needs grid_size"),
        ({"carry_optimizer_state": True, "optimizer": "lbfgs"}, "adam/adamw only"),
    ],
)
def test_bad_configs_fail_before_training_with_a_clear_message(changes, message):
    with pytest.raises(ConfigError, match=message):
        train(small_config(**changes), task=small_task())


def test_unknown_config_key_and_bad_widths_are_reported():
    with pytest.raises(ConfigError, match="unknown config key"):
        RunConfig.from_dict({"task": "x", "shedule": [1]})
    with pytest.raises(ConfigError, match="needs 2 inputs"):
        train(
            small_config(model_options={"widths": [3, 3, 1], "grid_size": 3, "degree": 3}),
            task=small_task(),
        )


def test_optimizers_and_schedules_run():
    task = small_task()
    lbfgs = train(
        small_config(
            optimizer="lbfgs",
            lr=1.0,
            lr_start=None,
            warmup_steps=0,
            optimizer_options={"max_iter": 5},
            schedule=[3, 3],
        ),
        task=task,
    )
    assert lbfgs.status == "ok" and max(h["evaluations"] for h in lbfgs.history) > 1
    adamw = train(
        small_config(
            optimizer="adamw",
            optimizer_options={"weight_decay": 1e-4},
            lr_schedule="cyclic_exp",
            lr_schedule_options={"cycle": 4, "gamma": 0.99},
        ),
        task=task,
    )
    assert adamw.status == "ok"
    assert adamw.history[-1]["loss"] < adamw.history[0]["loss"]


def test_carrying_adam_moments_keeps_exactness_and_shapes():
    task = small_task()
    result = train(small_config(carry_optimizer_state=True), task=task)
    assert result.status == "ok" and len(result.refinements) == 2
    assert all(r["rel_change"] < 1e-12 for r in result.refinements)
    # the carried moments change the steps after the first refinement, and only those
    reset = train(small_config(), task=task)
    losses = [h["loss"] for h in result.history]
    reset_losses = [h["loss"] for h in reset.history]
    assert losses[:5] == reset_losses[:5]
    assert losses[5:] != reset_losses[5:]


def test_macs_forward_count_matches_flop_counter():
    """The analytic count is the dense-equivalent contraction: on the dense-basis kernel
    (one matmul per layer) FlopCounterMode must count exactly 2 * MACs."""
    from bench_mlkan import kernels

    previous = kernels.get_default_kernel()
    kernels.set_default_kernel("autograd")
    try:
        _check_macs()
    finally:
        kernels.set_default_kernel(previous)


def _check_macs():
    torch.manual_seed(0)
    x = torch.rand(37, 2, dtype=torch.float64)
    for model in (
        KAN([2, 4, 3, 1], 5, 3).double(),
        KAN([2, 4, 1], 7, 2, linear_first=True).double(),
        MultichannelMLP([2, 4, 1], 6, 3, evaluation="relu").double(),
        MLP([2, 8, 8, 1]).double(),
    ):
        with FlopCounterMode(display=False) as counter:
            model(x)
        assert counter.get_total_flops() == 2 * 37 * forward_macs_per_point(model)


def test_fine_strategy_starts_from_a_fresh_fine_model():
    task = small_task()
    cfg = small_config(schedule=[0, 0, 5])
    model = build_model(cfg, task, level=2)
    assert model.grid_size == 12
    result = train(cfg, task=task)
    assert result.params_per_level == {2: 135} and result.refinements == []


def test_ddp_two_processes_keep_ranks_identical(tmp_path):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench_mlkan.devtools.ddp_check",
            "--devices",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ranks_identical_every_step"] and report["levels"] == [0, 1, 2]
    assert report["max_abs_diff_vs_single_process"] < 1e-9
    assert proc.returncode == 0 and report["ok"], proc.stderr[-3000:]


class PoisonTask(ExplodingTask):
    """Parameters become NaN inside an L-BFGS line search: the kernel then fails on NaN
    inputs, which must still be recorded as divergence."""

    def loss_terms(self, model, batch, state, update_state=False):
        if update_state:
            self.calls += 1
        if self.calls > self.explode_at:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        return FunctionRegression.loss_terms(self, model, batch, state, update_state)


@pytest.mark.parametrize("kernel", ["autograd", "auto"])
def test_nan_parameters_inside_lbfgs_are_divergence_not_failure(kernel):
    from bench_mlkan import kernels

    previous = kernels.get_default_kernel()
    kernels.set_default_kernel(kernel)
    try:
        _check_nan_divergence()
    finally:
        kernels.set_default_kernel(previous)


def _check_nan_divergence():
    cfg = small_config(
        optimizer="lbfgs",
        lr=1.0,
        lr_start=None,
        warmup_steps=0,
        optimizer_options={"max_iter": 4},
        schedule=[3, 3],
    )
    result = train(cfg, task=PoisonTask(explode_at=2))
    assert result.status == "diverged", result.error
    assert result.diverged["step"] == 2 and result.diverged["level"] == 0


@pytest.mark.parametrize("model", ["kan", "mcmlp", "mlp"])
def test_load_from_checkpoint_rebuilds_task_model_and_level(tmp_path, model):
    from bench_mlkan.engine import TaskModule

    opts = {"widths": [2, 3, 1]} if model == "mlp" else None
    cfg = small_config(
        task="regression_rotated",
        task_options={"size": "tiny"},
        model=model,
        schedule=[4] if model == "mlp" else [2, 2, 2],
        checkpoint_dir=str(tmp_path),
        **({"model_options": opts} if opts else {}),
    )
    result = train(cfg)
    loaded = TaskModule.load_from_checkpoint(tmp_path / "last.ckpt", weights_only=True)
    assert loaded.level == (0 if model == "mlp" else 2)
    for a, b in zip(result.model.parameters(), loaded.model.parameters()):
        assert torch.equal(a.detach(), b.detach())


def test_a_replaced_optimizer_warns_about_its_leftovers():
    adam = small_config()
    assert adam.warnings() == []
    lbfgs = adam.replace(optimizer="lbfgs")
    assert any("warm-up ramp" in w for w in lbfgs.warnings())
    assert lbfgs.replace(warmup_steps=0, lr_start=None).warnings() == []
