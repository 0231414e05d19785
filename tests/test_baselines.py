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
