"""Burgers metrics for the PINN literature: L1RE beside L2RE, PINNacle's Burgers1d-C
evaluation points (regenerated), and burgers_1d_standard settings for every baseline that
has burgers_1d ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench_mlkan.baselines import BASELINES, baseline_config, baseline_tasks
from bench_mlkan.models import KAN
from bench_mlkan.tasks import TASKS
from bench_mlkan.tasks.burgers import NU_STANDARD, cole_hopf, pinnacle_points

#: values of PINNacle's ref/burgers1d.dat (COMSOL, nu = 0.01/pi) away from the shock: (x, t, u)
COMSOL = [(-0.5, 0.5, 0.5922882132540357), (-0.9, 0.5, 0.12039112341252983),
          (-0.8, 1.0, 0.1529868224179812), (0.5, 0.5, -0.5922882132540496)]  # fmt: skip


def model_for(task):
    torch.manual_seed(0)
    return KAN([2, 4, 1], grid_size=3, degree=3, input_domain=task.feature_domain).double()


def test_pinnacle_points_are_its_grid():
    x = pinnacle_points().numpy()
    xs = np.linspace(-1.0, 1.0, 101)  # PINNacle's file: x = -1 + 0.02 i
    ts = np.linspace(0.0, 1.0, 11)  # columns t = 0, 0.1, ..., 1
    expected = np.stack(np.meshgrid(xs, ts, indexing="ij"), -1).reshape(-1, 2)  # x-major
    assert x.shape == (1111, 2)
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-15)
    assert x[50 * 11, 0] == 0.0 and x[0, 0] == -1.0 and x[-1, 0] == 1.0  # ends and 0 exact


def test_cole_hopf_on_pinnacle_points_is_near_its_comsol_values():
    pts = torch.tensor([[x, t] for x, t, _ in COMSOL], dtype=torch.float64)
    u = cole_hopf(pts, NU_STANDARD)[:, 0].numpy()
    comsol = np.array([v for *_, v in COMSOL])
    assert np.abs(u - comsol).max() < 2e-3  # COMSOL's own error there: 5e-4 .. 1.7e-3
    assert abs(cole_hopf(pts[:1], 0.01)[0, 0].item() - comsol[0]) > 3e-3  # nu matters


def test_l1re_and_l2re_on_both_grids_match_numpy():
    task = TASKS["burgers_1d_standard"](size="tiny")
    model = model_for(task)
    metrics = task.evaluate(model)

    def errors(points: np.ndarray) -> tuple[float, float]:
        x = torch.tensor(points)
        with torch.no_grad():
            pred = task.predict(model, x)[:, 0].numpy()
        ref = cole_hopf(x, NU_STANDARD)[:, 0].numpy()
        e = pred - ref
        return np.sqrt((e**2).sum() / (ref**2).sum()), np.abs(e).sum() / np.abs(ref).sum()

    l2, l1 = errors(task.eval_points().numpy())
    assert metrics["rel_l2"] == pytest.approx(l2, rel=1e-10)
    assert metrics["rel_l1"] == pytest.approx(l1, rel=1e-12)
    grid = np.stack(
        np.meshgrid(np.linspace(-1, 1, 101), np.linspace(0, 1, 11), indexing="ij"), -1
    ).reshape(-1, 2)
    l2p, l1p = errors(grid)
    assert metrics["pinnacle_rel_l2"] == pytest.approx(l2p, rel=1e-10)
    assert metrics["pinnacle_rel_l1"] == pytest.approx(l1p, rel=1e-10)
    assert l1p != pytest.approx(l2p, rel=1e-3)  # two different norms


def test_pinnacle_metrics_only_for_its_viscosity():
    task = TASKS["burgers_1d"](size="tiny")
    metrics = task.evaluate(model_for(task))
    assert "rel_l1" in metrics and not any(k.startswith("pinnacle") for k in metrics)
    assert task.describe()["pinnacle_eval"] is None
    std = TASKS["burgers_1d_standard"](size="tiny")
    assert "1111 points" in std.describe()["pinnacle_eval"]


def test_every_burgers_baseline_also_runs_the_standard_viscosity():
    have = [b for b in BASELINES if "burgers_1d" in baseline_tasks(b)]
    assert len(have) >= 10
    for name in have:
        assert "burgers_1d_standard" in baseline_tasks(name), name
        paper = baseline_config(name, "burgers_1d").to_dict()
        std = baseline_config(name, "burgers_1d_standard").to_dict()
        assert std["task_options"].get("nu", NU_STANDARD) == NU_STANDARD
        assert paper["task_options"].get("nu", 0.01) == 0.01
        for d in (paper, std):
            d["task_options"].pop("nu", None)
            d.pop("task")
        assert std == paper, name  # the same settings
        std_task = TASKS["burgers_1d_standard"](**baseline_config(name, "burgers_1d_standard")
                                                .task_options)  # fmt: skip
        assert std_task.nu == NU_STANDARD


def test_pinnacle_literature_number_names_a_metric_we_report():
    import json
    from pathlib import Path

    import bench_mlkan

    paper = json.loads((Path(bench_mlkan.__file__).parent / "paper_results.json").read_text())
    (entry,) = paper["literature"]["burgers_1d_standard"]
    assert entry["value"] == 1.45e-2 and "20,000" in entry["settings"]
    task = TASKS["burgers_1d_standard"](size="tiny")
    assert entry["metric"] in task.evaluate(model_for(task))
