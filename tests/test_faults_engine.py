"""Faults of configs and runs (issue: reliability): every bad input is a clear one-line
error before any work, a checkpoint from a config never runs code, float32 multilevel
runs refine, and a run that stops keeps what its finished levels produced."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")

from toy import small_task  # noqa: E402

from bench_mlkan.baselines import BASELINES, baseline_config, baseline_tasks  # noqa: E402
from bench_mlkan.config import REFINE_RTOL, ConfigError, RunConfig  # noqa: E402
from bench_mlkan.diagnostics import is_collapsed, outside_grid_fractions  # noqa: E402
from bench_mlkan.engine import train  # noqa: E402
from bench_mlkan.models import KAN  # noqa: E402
from bench_mlkan.tasks import FunctionRegression  # noqa: E402


def small_config(**changes) -> RunConfig:
    base = RunConfig(
        task="function_regression",
        model="kan",
        model_options={"widths": [2, 3, 1], "grid_size": 3, "degree": 3, "squash": "tanh"},
        schedule=[4, 4],
        lr=1e-2,
        progress=False,
    )
    return base.replace(**changes)


# ----------------------------------------------------------------------------- configs
def _paper_ml() -> dict:
    return baseline_config("kan_multilevel", "regression_rotated").to_dict()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"model_options": {"grid_sze": 3}}, "model_options.grid_sze: unknown option (did you mean 'grid_size'?)"),  # noqa: E501
        ({"task_options": {"sise": "tiny"}}, "task_options.sise: unknown option (did you mean 'size'?)"),  # noqa: E501
        ({"optimizer_options": {"max_itr": 3}}, "optimizer_options.max_itr: unknown option (did you mean 'max_iter'?)"),  # noqa: E501
        ({"lr_schedule_options": {"gamma": 0.9}}, "lr_schedule_options.gamma: unknown option (this takes no options)"),  # noqa: E501
        ({"lr": "abc"}, "lr: expected a number, got 'abc'"),
        ({"model_options": {"widths": []}}, "model_options.widths: must be a list of >= 2 positive integers, got []"),  # noqa: E501
        ({"schedule": [1, "a"]}, "schedule: expected a list of integers, got [1, 'a']"),
        ({"shedule": [1]}, "shedule: unknown config key (did you mean 'schedule'?)"),
        ({"optimizer": "lbfgz"}, "optimizer: unknown optimizer 'lbfgz'; known: adam, adamw, lbfgs, sgd"),  # noqa: E501
        ({"resume_from": "https://example.com/x.ckpt"}, "resume_from: only local files are accepted"),  # noqa: E501
        ({"resume_from": "/nonexistent/x.ckpt"}, "resume_from: no such file"),
        ({"blowup_factor": 0.5}, "blowup_factor: must be > 1"),
    ],
)  # fmt: skip
def test_every_bad_field_is_a_one_line_error_naming_it(patch, message):
    data = _paper_ml()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data).validate()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_are_coerced_to_the_fields_types():
    c = RunConfig.from_dict({**_paper_ml(), "precision": 64, "lr": 1, "seed": "7"}).validate()
    assert (c.precision, c.lr, c.seed) == ("64", 1.0, 7)
    assert isinstance(c.lr, float)


def test_every_shipped_baseline_config_validates():
    for name in BASELINES:
        for task in baseline_tasks(name):
            baseline_config(name, task).validate()


# ----------------------------------------------------------------------------- checkpoints
class _Payload:
    """Unpickling this runs code (creates a marker file)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": _Payload(str(marker))}, f)
    # plain unpickling would run it (the check is meaningful):
    with open(ckpt, "rb") as f:
        pickle.load(f).get("payload").close()
    assert marker.exists()
    marker.unlink()
    result = train(small_config(resume_from=str(ckpt)), task=small_task())
    assert result.status == "failed"
    assert "weights_only" in result.error or "Unpickl" in result.error
    assert not marker.exists()


def test_own_checkpoints_still_resume_with_weights_only(tmp_path):
    task = small_task()
    full = train(small_config(checkpoint_dir=str(tmp_path), checkpoint_every=1), task=task)
    resumed = train(small_config(resume_from=str(tmp_path / "step5.ckpt")), task=task)
    assert resumed.status == "ok"
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- float32
def _tiny(name: str, task: str) -> RunConfig:
    cfg = baseline_config(name, task, seed=1234)
    steps = [2 if s > 0 else 0 for s in cfg.schedule]
    return cfg.replace(
        precision="32",
        schedule=steps,
        task_options={**cfg.task_options, "size": "tiny"},
        optimizer_options={**cfg.optimizer_options, "max_iter": 3}
        if cfg.optimizer == "lbfgs"
        else cfg.optimizer_options,
        progress=False,
    )


@pytest.mark.parametrize(
    "name, task",
    [
        (n, t)
        for n in ("kan_multilevel", "mcmlp_multilevel")
        for t in baseline_tasks(n)
        if t != "allen_cahn_1d"  # its reference solve is slow; covered in the slow variant
    ],
)
def test_float32_multilevel_refines_within_the_precision_tolerance(name, task):
    _check_float32_refinements(train(_tiny(name, task)))


def _check_float32_refinements(result) -> None:
    # "diverged" is a legitimate outcome of 2-step levels (the ReLU basis blows up on
    # Allen-Cahn in float64 too); what must not happen is a failed refinement check
    assert result.status in ("ok", "diverged"), result.error
    if result.status == "ok":
        assert len(result.refinements) == len(result.config["schedule"]) - 1
    assert result.refinements
    assert all(r["rel_change"] <= REFINE_RTOL["32"] for r in result.refinements)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kan_multilevel", "mcmlp_multilevel"])
def test_float32_multilevel_allen_cahn(name):
    _check_float32_refinements(train(_tiny(name, "allen_cahn_1d")))


# ----------------------------------------------------------------------------- stopping
def test_a_failed_refinement_keeps_the_finished_levels(monkeypatch):
    exact = KAN.refined

    def inexact(self):  # a refinement that changes the function
        new = exact(self)
        with torch.no_grad():
            new.layers[0].coef.add_(0.1)
        return new

    monkeypatch.setattr(KAN, "refined", inexact)
    result = train(small_config(schedule=[3, 3]), task=small_task())
    assert result.status == "failed" and "RefinementError" in result.error
    assert result.steps == 3 and len(result.history) == 3
    assert len(result.eval_history) == 1 and "rel_l2" in result.eval_history[0]
    assert list(result.level_states) == [0]  # the trained coarse level, not the refined one
    assert result.level_stats[0]["steps"] == 3


class ExplodingTask(FunctionRegression):
    """A regression whose loss is multiplied by 1e12 from step ``at`` on (finite)."""

    def __init__(self, at: int, **kw):
        super().__init__(lambda p: p[:, :1], [(-1.0, 1.0), (-1.0, 1.0)], n_train=32, n_test=8,
                         eval_points_per_dim=5, **kw)  # fmt: skip
        self.at, self.calls = at, 0

    def loss_terms(self, model, batch, state, update_state=False):
        terms = super().loss_terms(model, batch, state, update_state)
        if update_state:
            self.calls += 1
        factor = 1e12 if self.calls > self.at else 1.0
        return {k: v * factor for k, v in terms.items()}


def test_a_finite_blow_up_is_recorded_as_diverged():
    result = train(small_config(schedule=[6], lr=1e-3), task=ExplodingTask(at=3))
    assert result.status == "diverged"
    assert result.diverged["step"] == 3 and "blowup_factor" in result.diverged["reason"]
    assert math.isfinite(result.diverged["loss"])


def test_idle_lbfgs_steps_are_counted():
    # tolerance_grad huge: every L-BFGS step ends after its first evaluation, changing nothing
    cfg = small_config(
        optimizer="lbfgs", lr=1.0, schedule=[5], optimizer_options={"tolerance_grad": 1e6}
    )
    result = train(cfg, task=small_task())
    assert result.status == "ok"
    assert result.idle_steps == 5 and result.evaluations == 5
    assert all(h["idle"] for h in result.history)
    busy = train(small_config(optimizer="lbfgs", lr=1.0, schedule=[5]), task=small_task())
    assert busy.idle_steps == 0 and busy.evaluations > 5
    assert busy.work == result.work and busy.work_evaluations > result.work_evaluations


# ----------------------------------------------------------------------------- collapse
def test_outside_grid_fractions_and_collapse():
    torch.manual_seed(0)
    model = KAN([1, 3, 1], grid_size=4, degree=3).double()
    x = torch.linspace(-1, 1, 101, dtype=torch.float64).unsqueeze(1)
    assert outside_grid_fractions(model, lambda: model(x)) == [0.0, 0.0]
    outside = torch.linspace(1.5, 3, 50, dtype=torch.float64).unsqueeze(1)
    fractions = outside_grid_fractions(model, lambda: model(torch.cat([x, outside])))
    assert fractions[0] == pytest.approx(50 / 151)
    # every input clamped to the right end: a constant function, detected as collapsed
    assert is_collapsed(model(outside)) and not is_collapsed(model(x))


def test_records_carry_diagnostics_per_level():
    result = train(small_config(), task=small_task())
    assert result.diagnostics["collapsed"] is False
    assert len(result.diagnostics["outside_grid"]) == 2
    assert "outside_grid" in result.eval_history[0]
    assert set(result.level_stats) == {0, 1}
    assert all(s["wall_clock"] > 0 for s in result.level_stats.values())


def test_commands_run_with_the_allocator_settings_however_started():
    import subprocess
    import sys

    code = (
        "from bench_mlkan.cli import ensure_runtime_env; ensure_runtime_env(); import os; "
        "print(os.environ.get('MALLOC_MMAP_MAX_'), os.environ.get('MALLOC_TRIM_THRESHOLD_'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "BENCH_MLKAN_NO"))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["0", "4294967296"], out.stderr
