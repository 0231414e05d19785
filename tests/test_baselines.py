"""Baselines as data: every folder complete, every config valid, strategies comparable."""

from __future__ import annotations

import pytest

from bench_mlkan.baselines import BASELINES, baseline_config, baseline_tasks, load_baseline
from bench_mlkan.config import ConfigError


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_folder_is_complete_and_valid(name):
    folder = BASELINES[name]
    for required in ("config.json", "search_space.json", "README.md"):
        assert (folder / required).exists(), f"{name} lacks {required}"
    for task in baseline_tasks(name):
        baseline_config(name, task, seed=1).validate()


@pytest.mark.parametrize("family", ["kan", "mcmlp"])
def test_strategies_of_a_family_differ_only_in_their_schedule(family):
    specs = {s: load_baseline(f"{family}_{s}") for s in ("coarse", "fine", "multilevel")}
    tasks = {s: set(spec["tasks"]) for s, spec in specs.items()}
    assert tasks["coarse"] == tasks["fine"] == tasks["multilevel"]
    for task in tasks["coarse"]:
        strip = [
            {k: v for k, v in spec["tasks"][task].items() if k != "schedule"}
            for spec in specs.values()
        ]
        assert strip[0] == strip[1] == strip[2], task


def test_kan_and_relu_basis_run_the_same_experiments():
    for strategy in ("coarse", "fine", "multilevel"):
        assert (
            load_baseline(f"kan_{strategy}")["tasks"] == load_baseline(f"mcmlp_{strategy}")["tasks"]
        )


def test_the_papers_regression_budgets():
    schedules = {
        s: baseline_config(f"kan_{s}", "regression_rotated").schedule
        for s in ("coarse", "fine", "multilevel")
    }
    assert schedules == {
        "coarse": [128, 0, 0, 0],
        "fine": [0, 0, 0, 16],
        "multilevel": [32, 16, 8, 4],
    }
    burgers = {
        s: baseline_config(f"kan_{s}", "burgers_1d").schedule
        for s in ("coarse", "fine", "multilevel")
    }
    assert burgers == {"coarse": [3200, 0, 0], "fine": [0, 0, 800], "multilevel": [800, 400, 200]}


def test_missing_task_or_tuned_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="has no settings for task"):
        baseline_config("mlp_large", "burgers_1d")
    with pytest.raises(KeyError, match="known: "):
        baseline_config("kan_nope", "burgers_1d")


def test_baselines_as_diffs_resolve_and_fail_clearly(tmp_path, monkeypatch):
    import json

    from bench_mlkan import baselines as B

    # the shipped diffs: kan_fine states only its schedules, the rest comes from kan_multilevel
    raw = json.loads((BASELINES["kan_fine"] / "config.json").read_text())
    assert raw["extend"] == "kan_multilevel" and "defaults" not in raw
    fine, ml = load_baseline("kan_fine"), load_baseline("kan_multilevel")
    assert fine["defaults"] == ml["defaults"]
    assert (
        fine["tasks"]["burgers_1d"]["model_options"] == ml["tasks"]["burgers_1d"]["model_options"]
    )
    # a task set to null is removed
    assert "regression_rotated" not in load_baseline("kan_multilevel_carry")["tasks"]
    # cycles and unknown parents are errors naming them
    for name, parent in (("cyc_a", "cyc_b"), ("cyc_b", "cyc_a"), ("orphan", "nope")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"extend": parent, "tasks": {}}))
        monkeypatch.setitem(B.BASELINES, name, tmp_path / name)
    with pytest.raises(ConfigError, match="cycle cyc_a -> cyc_b -> cyc_a"):
        load_baseline("cyc_a")
    with pytest.raises(ConfigError, match="extends unknown baseline 'nope'"):
        load_baseline("orphan")
