"""Optuna studies: search spaces, validation, the trial queue, workers, pruning, retry, resume,
storages, outputs, plugins.

Tiny trials: the rotated regression at size "tiny" with a 21^2 evaluation grid and a work
budget of 8 coarse steps. Tests of the queue logic replace training by a stub.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from bench_mlkan import plugins, tuning  # noqa: E402
from bench_mlkan.baselines import (  # noqa: E402
    BASELINES,
    baseline_config,
    baseline_tasks,
    tuned_path,
)
from bench_mlkan.baselines import ROOT as BASELINES_ROOT  # noqa: E402
from bench_mlkan.bench import parse_sets  # noqa: E402
from bench_mlkan.config import ConfigError, RunConfig  # noqa: E402
from bench_mlkan.engine import RunResult  # noqa: E402
from bench_mlkan.home import ENV as HOME_ENV  # noqa: E402
from bench_mlkan.tasks import TASKS  # noqa: E402
from bench_mlkan.tuning import objective as objective_module  # noqa: E402
from bench_mlkan.tuning.space import normalise_sets  # noqa: E402

TINY = [
    "task_options.size=tiny",
    "task_options.eval_points_per_dim=21",
    "optimizer_options.max_iter=5",
]
#: the rotated regression is tuned by its ranking metric (task metadata)
OBJECTIVE = f"log10 {TASKS['regression_rotated'].metric}"


@pytest.fixture(autouse=True)
def _restore_registries(monkeypatch):
    """Tests register private baselines/tasks/plugins; other tests must not see them."""
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.setenv(plugins.ENV, "")  # restored (removed) after the test
    before, tasks_before = dict(BASELINES), dict(TASKS)
    yield
    BASELINES.clear()
    BASELINES.update(before)
    TASKS.clear()
    TASKS.update(tasks_before)
    plugins._loaded.clear()


def tiny_args(
    tmp_path: Path, baseline: str, *extra: str, trials: int = 2, plots: bool = False
) -> list[str]:
    argv = ["--task", "regression_rotated", "--baseline", baseline, "--trials", str(trials)]
    argv += [] if plots else ["--no-plots"]  # plots take seconds; one test draws them
    argv += ["--budget", "8", "--out", str(tmp_path), "--seed", "1234"]
    argv += ["--heartbeat", "1", "--grace", "10", "--sampler-seed", "0", "--set", *TINY[:2]]
    return argv + ["--set", TINY[2], *extra]  # --set twice: it accumulates


def copy_baseline(tmp_path: Path, name: str = "kan_multilevel") -> str:
    """A private copy of a baseline folder with at most 2 levels in its budget split."""
    dest = tmp_path / "baselines" / f"tune_test_{uuid.uuid4().hex[:8]}"
    shutil.copytree(BASELINES_ROOT / name, dest, ignore=shutil.ignore_patterns("tuned"))
    space_path = dest / "search_space.json"
    space = json.loads(space_path.read_text())
    if "budget_fractions" in space["parameters"]:
        # at most 2 levels: with a budget of 8 every split buys a step (4 levels may not)
        space["parameters"]["budget_fractions"]["levels"] = {"low": 1, "high": 2}
        space_path.write_text(json.dumps(space))
    return str(dest)


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}"


def load(tmp_path: Path, study: str, storage: str | None = None) -> optuna.Study:
    url = storage or db_url(tmp_path)
    storage_obj = tuning.make_storage(url) if tuning.is_journal(url) else url
    return optuna.load_study(study_name=study, storage=storage_obj)


def tuned_json(tmp_path: Path, baseline: str) -> Path:
    return tmp_path / "tuned" / Path(baseline).name / "regression_rotated.json"


def fake_train(outcomes: list):
    """A stand-in for ``engine.train``: returns (or raises) the given outcomes in turn."""
    calls = []

    def train(config, callbacks=None, loggers=None, task=None):
        calls.append(config)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, str):
            return RunResult(
                config=config,
                status=outcome,
                diverged={"step": 3, "level": 0, "loss": math.nan}
                if outcome == "diverged"
                else None,
                error="Traceback ...\nRuntimeError: boom" if outcome == "failed" else None,
            )
        metrics = {"train_mse": outcome, "test_mse": 2 * outcome}
        return RunResult(config=config, status="ok", final_metrics=metrics, steps=4)

    train.calls = calls
    return train


def one_line_error(err: str) -> bool:
    return err.startswith("tune: ") and err.strip().count("\n") == 0 and "Traceback" not in err


# ----------------------------------------------------------------------------- spaces
def test_suggest_turns_a_space_into_run_config_overrides():
    space = tuning.load_space("kan_multilevel", "regression_rotated")
    assert space["lr"]["low"] == 0.05 and "warmup_steps" not in space  # task entries apply
    u = [0.5, 0.25, 1.0]
    trial = optuna.trial.FixedTrial(
        {"lr": 0.3, "model_options.grid_size": 4, "levels": 3}
        | {f"budget_split.u{i}": v for i, v in enumerate(u)}
    )
    out = tuning.suggest(trial, space, levels=4)
    w = [-math.log(v) for v in u]
    assert out["lr"] == 0.3 and out["model_options"] == {"grid_size": 4}
    assert out["budget_fractions"] == pytest.approx([x / sum(w) for x in w])
    split = {"budget_fractions": space["budget_fractions"]}
    one = tuning.suggest(optuna.trial.FixedTrial({"levels": 1}), split, levels=4)
    assert one["budget_fractions"] == [1.0]
    # categorical choices that are lists travel as JSON text
    lists = {"model_options.widths": {"type": "categorical", "choices": [[2, 5, 1], [2, 8, 1]]}}
    got = tuning.suggest(optuna.trial.FixedTrial({"model_options.widths": "[2, 8, 1]"}), lists, 1)
    assert got == {"model_options": {"widths": [2, 8, 1]}}


@pytest.mark.filterwarnings("ignore:The distribution is specified by")
def test_corners_of_a_space_are_its_range_ends_and_every_choice():
    space = {
        "lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        "warmup_steps": {"type": "int", "low": 0, "high": 10, "step": 4},  # grid 0, 4, 8
        "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd"]},
        "budget_fractions": {"type": "budget_split", "levels": {"low": 1, "high": None}},
    }
    corners = tuning.corner_params(space, levels=3)
    low, high, *choices = corners
    assert low == {"lr": 0.01, "warmup_steps": 0, "optimizer": "adam", "levels": 1}
    assert high == {
        "lr": 1.0,
        "warmup_steps": 8,
        "optimizer": "sgd",
        "levels": 3,
        "budget_split.u0": 0.5,
        "budget_split.u1": 0.5,
        "budget_split.u2": 0.5,
    }
    assert [c["optimizer"] for c in choices] == ["adamw", "sgd"]
    fractions = tuning.suggest(optuna.trial.FixedTrial(high), space, levels=3)["budget_fractions"]
    assert fractions == pytest.approx([1 / 3] * 3)


def test_every_baseline_has_a_space_whose_trials_are_valid_configs():
    folders = sorted(p.parent for p in BASELINES_ROOT.glob("*/config.json"))
    assert folders
    for folder in folders:
        name = folder.name
        assert (folder / "search_space.json").exists(), name
        for task in baseline_tasks(name):
            spec = tuning.StudySpec(task=task, baseline=name, budget=64.0, metric="rel_l2")
            try:
                tuning.validate_spec(spec)  # the corners of the space are valid configs
            except ModuleNotFoundError as e:  # a peer whose optional extra is not installed
                assert "pip install '.[peers]'" in str(e), e
                continue
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            for _ in range(3):
                config, tuned = tuning.trial_config(spec, study.ask())
                RunConfig.from_dict(config).validate()
                assert config["work_budget"] == tuned["work_budget"] == 64.0
                assert sum(config["budget_fractions"]) == pytest.approx(1.0)
                if "budget_fractions" not in tuning.load_space(name, task):
                    # a single-level recipe keeps its one trained level
                    schedule = baseline_config(name, task).schedule
                    hot = [1.0 if s else 0.0 for s in schedule]
                    assert config["budget_fractions"] == pytest.approx(hot), (name, task)


def test_set_fixes_a_field_removes_it_from_the_space_and_sizes_stay_out_of_tuned_configs():
    sets = parse_sets(
        ["lr=1", "budget_fractions=[0.5, 0.5]", "model_options.grid_size=3", "precision=64"]
        + ["task_options.size=tiny", "task_options.n_test=50"]
    )
    sets = normalise_sets(sets)
    assert isinstance(sets["lr"], float) and sets["precision"] == "64"  # field types
    spec = tuning.StudySpec(
        task="regression_rotated", baseline="kan_multilevel", budget=8.0, metric="x", sets=sets
    )
    assert spec.space() == {}
    config, tuned = tuning.trial_config(spec, optuna.trial.FixedTrial({}))
    assert config["lr"] == 1.0 and config["budget_fractions"] == [0.5, 0.5]
    assert config["model_options"]["grid_size"] == 3 and config["model_options"]["widths"]
    assert config["task_options"] == {"size": "tiny", "n_test": 50}
    assert tuned == {
        "lr": 1.0,
        "budget_fractions": [0.5, 0.5],
        "model_options": {"grid_size": 3},
        "precision": "64",
        "work_budget": 8.0,
    }
    assert spec.stripped() == {"task_options.size": "tiny", "task_options.n_test": 50}
    with pytest.raises(ConfigError, match="lrr: unknown config key"):
        normalise_sets(parse_sets(["lrr=1"]))


# ----------------------------------------------------------------------------- command line
def test_storage_forms_and_a_misspelled_one(tmp_path):
    studies = tmp_path / "studies"
    assert tuning.resolve_storage(None, studies) == f"sqlite:///{studies / 'optuna.db'}"
    assert tuning.resolve_storage("sqlite", studies) == f"sqlite:///{studies / 'optuna.db'}"
    assert tuning.resolve_storage("journal", studies) == str(studies / "journal.log")
    assert tuning.resolve_storage(str(tmp_path / "a.db"), studies) == f"sqlite:///{tmp_path}/a.db"
    assert tuning.resolve_storage(str(tmp_path / "j.log"), studies) == f"{tmp_path}/j.log"
    pg = "postgresql+psycopg2://optuna:secret@db-host/optuna"
    assert tuning.resolve_storage(pg, studies) == pg
    with pytest.raises(ConfigError) as e:
        tuning.resolve_storage("journel", studies)
    assert "'journel'" in str(e.value)
    assert all(w in str(e.value) for w in ("'journal'", "sqlite", "SQLAlchemy URL"))
    with pytest.raises(ConfigError, match="not a usable SQLAlchemy URL"):
        tuning.resolve_storage("postgress://db-host/optuna", studies)  # no such dialect
    assert tuning.redact(pg) == "postgresql+psycopg2://optuna:***@db-host/optuna"


def test_the_worker_command_line_is_the_parsed_namespace(tmp_path):
    parser = tuning.build_parser()
    argv = ["--task", "t", "--baseline", "b", "--budget", "0.1", "--trials", "7", "--wandb"]
    argv += ["--set", "a=1", "b.c=[1, 2]", "--set", "d=x", "--plugin", "p.py", "--plugin", "q"]
    argv += ["--sampler-seed", "3", "--no-write", "--pruner", "none", "--out", str(tmp_path)]
    args = parser.parse_args(argv)
    again = tuning.namespace_argv(parser, args)
    assert parser.parse_args(again) == args
    assert again.count("--set") == 2 and again.count("--plugin") == 2
    assert "--seed" not in again  # options left at their default are omitted

    args = tuning.parse_args(tiny_args(tmp_path, "kan_multilevel", "--plugin", "m", "--gpus", "0"))
    spec, url = tuning.spec_from_args(args)
    worker = tuning.parse_args(tuning.worker_argv(args, spec, url, 1, gpu=True))
    assert worker.worker_only and worker.worker_index == 1 and worker.accelerator == "gpu"
    assert worker.gpus is None and worker.workers is None
    assert (worker.storage, worker.study, worker.metric) == (url, spec.study_name, spec.metric)
    assert worker.plugins == ["m"] and worker.set == args.set and worker.seed == [1234]
    assert worker.baseline == "kan_multilevel"


def test_bad_input_is_one_line_before_any_trial(tmp_path, monkeypatch, capsys):
    fake = fake_train([1e-2])
    monkeypatch.setattr(objective_module, "train", fake)
    baseline = copy_baseline(tmp_path)
    space_path = Path(baseline) / "search_space.json"
    space = json.loads(space_path.read_text())
    cases = {
        "size": [*tiny_args(tmp_path, baseline), "--set", "task_options.size=tny"],
        "storage": [*tiny_args(tmp_path, baseline), "--storage", "journel"],
        "task": [*tiny_args(tmp_path, baseline), "--task", "no_such_task"],
        "plugin": [*tiny_args(tmp_path, baseline), "--plugin", str(tmp_path / "nope.py")],
        "field": [*tiny_args(tmp_path, baseline), "--set", "lrr=0.1"],
    }
    expected = {
        "size": "task_options",
        "storage": "journel",
        "task": "unknown task",
        "plugin": "nope.py",
        "field": "lrr",
    }
    for case, argv in cases.items():
        assert tuning.tune_main(argv) == 2, case
        err = capsys.readouterr().err
        assert one_line_error(err) and expected[case] in err, (case, err)
    # a corner of the search space that is not a valid config (an unknown cost model)
    choices = ["paper", "no_such_cost"]
    space["parameters"]["cost_model"] = {"type": "categorical", "choices": choices}
    space_path.write_text(json.dumps(space))
    assert tuning.tune_main(tiny_args(tmp_path, baseline)) == 2
    err = capsys.readouterr().err
    assert one_line_error(err) and "'no_such_cost'" in err and "search space" in err
    assert fake.calls == []  # no trial ran
    assert not (tmp_path / "studies" / "optuna.db").exists()


# ----------------------------------------------------------------------------- workers
def test_baseline_config_finds_a_tuned_config_in_the_home(tmp_path, monkeypatch):
    monkeypatch.setattr(objective_module, "train", fake_train([1e-2, 1e-3]))
    baseline = copy_baseline(tmp_path)
    assert tuning.tune_main(tiny_args(tmp_path, baseline, "--pruner", "none")) == 0
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    name = Path(baseline).name
    if tuned_path(name, "regression_rotated") != tuned_json(tmp_path, baseline):
        pytest.xfail("baselines.tuned_path does not look in $BENCH_MLKAN_HOME/tuned yet")
    tuned = json.loads(tuned_json(tmp_path, baseline).read_text())
    config = baseline_config(name, "regression_rotated", tuned=True)
    assert config.lr == tuned["params"]["lr"] and config.work_budget == 8.0


def test_one_storage_holds_every_study(tmp_path, monkeypatch):
    monkeypatch.setattr(objective_module, "train", fake_train([1e-2]))
    baseline = copy_baseline(tmp_path)
    for budget in ("8", "16"):
        argv = tiny_args(tmp_path, baseline, trials=1)
        argv[argv.index("--budget") + 1] = budget
        assert tuning.tune_main(argv) == 0
    name = Path(baseline).name
    names = optuna.get_all_study_names(db_url(tmp_path))
    assert sorted(names) == [f"{name}.regression_rotated.w16", f"{name}.regression_rotated.w8"]
    for study in names:
        assert optuna.load_study(study_name=study, storage=db_url(tmp_path)).metric_names == [
            OBJECTIVE
        ]


def test_a_study_on_several_seeds_scores_the_geometric_mean_of_real_runs(tmp_path):
    """--seed A B: each trial trains on both seeds; its value is the mean of log10 metric,
    each seed's metric equals an independent train() of the trial's config on that seed."""
    from bench_mlkan.engine import train

    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--pruner", "none", trials=2)
    argv[argv.index("--seed") + 1 : argv.index("--seed") + 2] = ["1234", "1240"]
    assert tuning.tune_main(argv) == 0
    name = Path(baseline).name
    study = load(tmp_path, f"{name}.regression_rotated.w8.2seeds")  # another objective
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        per_seed = t.user_attrs["seed_metric_values"]
        assert sorted(per_seed) == ["1234", "1240"]
        logs = [math.log10(v) for v in per_seed.values()]
        assert t.value == pytest.approx(sum(logs) / 2, rel=1e-12)
        assert t.user_attrs["metric_value"] == pytest.approx(10 ** (sum(logs) / 2), rel=1e-9)
    best = min(trials, key=lambda t: t.value)
    tuned = json.loads(tuned_json(tmp_path, baseline).read_text())
    assert tuned["seeds"] == [1234, 1240] and tuned["trial"] == best.number
    assert tuned["seed_metric_values"] == best.user_attrs["seed_metric_values"]
    sizes = normalise_sets(parse_sets(TINY))["task_options"]  # stripped from tuned configs
    metric = TASKS["regression_rotated"].metric
    for seed in (1234, 1240):
        config = baseline_config(name, "regression_rotated", seed=seed, overrides=tuned["config"])
        run = {**config.to_dict(), "task_options": sizes, "progress": False}
        again = train(run).final_metrics[metric]
        assert again == pytest.approx(best.user_attrs["seed_metric_values"][str(seed)], rel=1e-9)
    assert (
        best.user_attrs["seed_metric_values"]["1234"]
        != best.user_attrs["seed_metric_values"]["1240"]
    )  # the seeds really differ
    summary = (tmp_path / "studies" / study.study_name / "README.md").read_text()
    assert "mean over the training seeds 1234, 1240" in summary


def test_pruning_stops_a_trial_at_a_level_boundary(tmp_path):
    class AfterLevel0(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return 0 in trial.intermediate_values

    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--set", "budget_fractions=[0.5, 0.5]", trials=1)
    assert tuning.tune(tuning.parse_args(argv), pruner=AfterLevel0()) == 0
    (trial,) = load(tmp_path, f"{Path(baseline).name}.regression_rotated.w8").get_trials()
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # reported at the end of level 0
    assert trial.user_attrs["pruned_at_level"] == 0
    assert "level 0" in trial.user_attrs["reason"]
    # budget 8 = 4 steps on level 0 + 2 on level 1; stopped after at most one level-1 step
    assert trial.user_attrs["steps"] <= 5
    assert not tuned_json(tmp_path, baseline).exists()  # no complete trial: nothing written


def test_failed_trials_are_recorded_the_study_goes_on_and_the_exit_code_says_so(
    tmp_path, monkeypatch, capsys
):
    fake = fake_train(["diverged", "failed", RuntimeError("crash"), 1e-3])
    monkeypatch.setattr(objective_module, "train", fake)
    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--storage", "journal", "--wandb", trials=4)
    assert tuning.tune_main(argv) == 1  # --wandb: off under WANDB_MODE=disabled, no error
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tune: 2 of 4 trials failed: trial 1: ") and "crash" in err
    study_name = f"{Path(baseline).name}.regression_rotated.w8"
    url = str(tmp_path / "studies" / "journal.log")
    trials = load(tmp_path, study_name, url).get_trials()
    states = [t.state for t in trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "diverged" in trials[0].user_attrs["reason"]
    assert "boom" in trials[1].user_attrs["error"]
    assert "crash" in trials[2].user_attrs["error"]
    assert trials[3].value == pytest.approx(-3.0)  # log10 of the task's metric (train_mse)
    assert tuning.trial_counts(load(tmp_path, study_name, url))["finished"] == 4
    assert json.loads(tuned_json(tmp_path, baseline).read_text())["trial"] == 3


def test_the_wandb_mirror_gets_each_trials_state(tmp_path, monkeypatch):
    class Run:
        def __init__(self):
            self.summary, self.tags, self.exit_code = {}, ("tune",), None

        def define_metric(self, *a, **k):
            pass

        def log(self, *a, **k):
            pass

        def finish(self, exit_code=0):
            self.exit_code = exit_code

    class Logger:
        def __init__(self):
            self.experiment = Run()

    loggers: list[Logger] = []
    monkeypatch.setattr(
        objective_module, "wandb_logger", lambda *a: loggers.append(Logger()) or loggers[-1]
    )
    monkeypatch.setattr(objective_module, "train", fake_train(["diverged", "failed", 1e-3]))
    baseline = copy_baseline(tmp_path)
    assert tuning.tune_main(tiny_args(tmp_path, baseline, "--wandb", trials=3)) == 1
    runs = [lg.experiment for lg in loggers]
    assert [r.summary["tune/state"] for r in runs] == ["pruned", "failed", "complete"]
    assert [r.tags[-1] for r in runs] == ["pruned", "failed", "complete"]
    assert [r.exit_code for r in runs] == [0, 1, 0]
    assert "diverged" in runs[0].summary["tune/reason"]
    assert runs[2].summary["tune/log10_train_mse"] == pytest.approx(-3.0)


def test_a_study_without_a_complete_trial_leaves_no_tuned_config(tmp_path, monkeypatch, capsys):
    baseline = copy_baseline(tmp_path)
    path = tuned_json(tmp_path, baseline)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": {"lr": 0.123}, "study": "an-older-study"}))
    # the workers died before finishing any trial
    monkeypatch.setattr(tuning.cli, "launch_workers", lambda *a: 1)
    assert tuning.tune_main(tiny_args(tmp_path, baseline, "--workers", "2")) == 1
    assert not path.exists()
    stale = path.with_name(path.name + ".stale")
    assert json.loads(stale.read_text())["study"] == "an-older-study"
    assert "no trial of study" in capsys.readouterr().err
    # every trial fails: still none
    monkeypatch.setattr(objective_module, "train", fake_train([RuntimeError("crash")]))
    assert tuning.tune_main(tiny_args(tmp_path, baseline)) == 1
    assert not path.exists()
    # a later study of the same baseline and task writes its own best trial
    monkeypatch.setattr(objective_module, "train", fake_train([1e-2]))
    argv = tiny_args(tmp_path, baseline, "--study", "fresh", trials=1)
    assert tuning.tune_main(argv) == 0
    assert json.loads(path.read_text())["study"] == "fresh"


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_dead_workers_trial_is_failed_and_retried(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(objective_module, "train", fake_train([1e-2]))
    baseline = copy_baseline(tmp_path)
    args = tuning.parse_args(tiny_args(tmp_path, baseline, "--storage", kind, trials=2))
    spec, url = tuning.spec_from_args(args)
    storage = tuning.make_storage(url, heartbeat=1, grace=1)
    study = tuning.prepare_study(storage, spec.study_name, 2, spec.meta())
    # a worker claims a trial, suggests its parameters, beats once and dies
    trial_id = tuning.pop_waiting(storage, study)
    dead = optuna.trial.Trial(study, trial_id)
    tuning.suggest(dead, spec.space(), levels=4)
    tuning.Heartbeat(storage, trial_id).beat()
    time.sleep(2.5)  # > grace (SQLite's clock has 1 s resolution)
    ran = tuning.run_worker(spec, storage, optuna.pruners.NopPruner(), poll_s=0.1, log=print)
    assert ran == 2
    trials = study.get_trials()
    counts = tuning.trial_counts(study)
    assert counts["complete"] == 2 and counts["retried"] == 1 and counts["failed"] == 0
    assert trials[dead.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params


def test_an_interrupted_study_resumes_and_totals_add_up(tmp_path, monkeypatch):
    fake = fake_train([1e-2, KeyboardInterrupt(), 1e-3])
    monkeypatch.setattr(objective_module, "train", fake)
    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--storage", "journal", trials=3)
    assert tuning.tune_main(argv) == 130  # Ctrl-C during the second trial
    study_name = f"{Path(baseline).name}.regression_rotated.w8"
    url = str(tmp_path / "studies" / "journal.log")
    counts = tuning.trial_counts(load(tmp_path, study_name, url))
    assert counts["complete"] == 1 and counts["retried"] == 1 and counts["waiting"] == 2
    assert counts["live"] == 3

    assert tuning.tune_main(argv) == 0  # the same command resumes
    counts = tuning.trial_counts(load(tmp_path, study_name, url))
    assert counts["complete"] == 3 and counts["live"] == 3

    argv5 = tiny_args(tmp_path, baseline, "--storage", "journal", trials=5)
    assert tuning.tune_main(argv5) == 0  # a larger target tops the study up
    study = load(tmp_path, study_name, url)
    counts = tuning.trial_counts(study)
    assert counts["complete"] == 5 and counts["retried"] == 1 and len(study.trials) == 6
    assert study.user_attrs[tuning.META_KEY]["target"] == 5
    assert len(fake.calls) == 6


def test_a_study_refuses_a_different_setup(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(objective_module, "train", fake_train([1e-2]))
    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--study", "s", trials=1)
    assert tuning.tune_main(argv) == 0
    other = [a.replace("max_iter=5", "max_iter=6") for a in argv]
    assert tuning.tune_main(other) == 2
    assert "tunes something else" in capsys.readouterr().err
    unknown = ["--task", "regression_rotated", "--baseline", "nope", "--budget", "1"]
    assert tuning.tune_main(unknown) == 2


def test_gpu_workers_are_pinned_one_device_each(tmp_path, monkeypatch):
    started = []

    class FakePopen:
        def __init__(self, cmd, env, start_new_session):
            started.append((cmd, env))

        def wait(self):
            return 0

    monkeypatch.setattr(tuning.cli.subprocess, "Popen", FakePopen)
    args = tuning.parse_args(tiny_args(tmp_path, "kan_multilevel", "--gpus", "0,1"))
    spec, url = tuning.spec_from_args(args)
    assert tuning.launch_workers(args, spec, url, 3, ["0", "1"]) == 0
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["0", "1", "0"]
    for cmd, _ in started:
        assert cmd[1:4] == ["-m", "bench_mlkan", "tune"] and "--worker-only" in cmd
        assert cmd[cmd.index("--accelerator") + 1] == "gpu" and "--gpus" not in cmd
    spec.accelerator = "gpu"
    config, tuned = tuning.trial_config(spec, optuna.create_study().ask())
    assert (config["accelerator"], config["devices"], config["strategy"]) == ("gpu", 1, "auto")
    assert "accelerator" not in tuned and "devices" not in tuned


# ----------------------------------------------------------------------------- workers, plugins
PLUGIN = textwrap.dedent(
    """
    from pathlib import Path

    from bench_mlkan.baselines import BASELINES
    from bench_mlkan.tasks import TASKS, FunctionRegression

    class Parabola(FunctionRegression):
        name = "tune_test_parabola"

        def __init__(self, n_train=16, **kw):
            super().__init__(lambda p: p[:, :1] ** 2, [(-1.0, 1.0)], n_train=n_train, n_test=8,
                             eval_points_per_dim=5, **kw)

    TASKS.register("tune_test_parabola", Parabola)
    BASELINES.register("tune_test_plugin_kan", Path(__file__).parent / "plugin_baseline")
    """
)
PLUGIN_BASELINE = {
    "description": "a multilevel KAN on the plugin's task",
    "defaults": {"model": "kan", "precision": "64", "cost_model": "paper"},
    "tasks": {
        "tune_test_parabola": {
            "task_options": {"n_train": 16},
            "model_options": {"widths": [1, 3, 1], "grid_size": 3, "degree": 3},
            "optimizer": "adam",
            "lr": 0.01,
            "schedule": [4, 4],
        }
    },
}
PLUGIN_SPACE = {
    "parameters": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "model_options.grid_size": {"type": "int", "low": 3, "high": 5},
        "budget_fractions": {"type": "budget_split", "levels": {"low": 1, "high": 2}},
    }
}


def test_two_workers_tune_a_plugin_task_and_feed_the_bench(tmp_path):
    """A task and a baseline registered by a plugin file outside the repository, tuned by
    two worker processes (which import the plugin too)."""
    folder = tmp_path / "user"
    (folder / "plugin_baseline").mkdir(parents=True)
    (folder / "plugin.py").write_text(PLUGIN)
    (folder / "plugin_baseline" / "config.json").write_text(json.dumps(PLUGIN_BASELINE))
    (folder / "plugin_baseline" / "search_space.json").write_text(json.dumps(PLUGIN_SPACE))
    task, name = "tune_test_parabola", "tune_test_plugin_kan"
    argv = ["--task", task, "--baseline", name, "--plugin", str(folder / "plugin.py")]
    argv += ["--workers", "2", "--trials", "4", "--budget", "8", "--out", str(tmp_path)]
    argv += ["--pruner", "none", "--sampler-seed", "0", "--set", "task_options.n_train=12"]
    assert tuning.tune_main(argv) == 0

    study_name = f"{name}.{task}.w8"
    study = load(tmp_path, study_name)
    objective_name = f"log10 {TASKS[task].metric}"
    assert study.metric_names == [objective_name]  # named for optuna-dashboard
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # no lost, no extra trial
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert 1 <= len(workers) <= 2
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)  # ran in the workers
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # no duplicate

    # the tuned config: this study's best trial, without the study's problem size
    best = min(trials, key=lambda t: t.value)
    tuned = json.loads((tmp_path / "tuned" / name / f"{task}.json").read_text())
    assert tuned["trial"] == best.number and tuned["value"] == best.value
    assert tuned["study"] == study_name and tuned["metric"] == objective_name and tuned["date"]
    assert "task_options" not in tuned["config"]
    assert tuned["stripped"] == {"task_options.n_train": 12}
    config = baseline_config(name, task, seed=1235, overrides=tuned["config"])
    assert config.lr == best.params["lr"] and config.work_budget == 8.0
    assert config.task_options == {"n_train": 16}  # the baseline's size, not the study's
    assert config.budget_fractions == tuned["config"]["budget_fractions"]
    assert config.model_options["grid_size"] == best.params["model_options.grid_size"]
    config.validate()

    folder = tmp_path / "studies" / study_name
    summary = (folder / "README.md").read_text()
    assert "| 4 | 0 | 0 | 0 | 0 | 0 |" in summary and "Parameter importances" in summary
    assert f"optuna-dashboard {db_url(tmp_path)}" in summary
    import matplotlib.image

    for plot in ("history", "importances", "intermediate", "parallel"):
        if plot == "intermediate" and not any(t.intermediate_values for t in trials):
            continue
        # 7 x 4.5 inches at 200 dpi
        assert matplotlib.image.imread(folder / f"{plot}.png").shape[:2] == (900, 1400), plot
        assert (folder / f"{plot}.svg").read_text().lstrip().startswith("<?xml")


# ----------------------------------------------------------------------------- PostgreSQL
def _postgres_binaries() -> tuple[str, str] | None:
    for folder in [None, *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        initdb = shutil.which("initdb", path=str(folder) if folder else None)
        pg_ctl = shutil.which("pg_ctl", path=str(folder) if folder else None)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (initdb + pg_ctl in a temporary folder)."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver psycopg2 is not installed")
    initdb, pg_ctl = binaries
    prefix: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="bench-mlkan-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(data, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pgdata = data / "pgdata"
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)
    try:
        run(initdb, "-D", str(pgdata), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -F"
        run(
            pg_ctl,
            "-D",
            str(pgdata),
            "-o",
            opts,
            "-l",
            str(data / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(data, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE optuna")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(pgdata), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


def test_postgresql_storage_against_a_real_server(tmp_path, postgres_url):
    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--storage", postgres_url, "--study", "pg", trials=2)
    assert tuning.tune_main(argv) == 0
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    tuned = json.loads(tuned_json(tmp_path, baseline).read_text())
    assert tuned["storage"] == postgres_url and tuned["trial"] == study.best_trial.number
    # a second command joining the finished study adds nothing
    assert tuning.tune_main(argv) == 0
    assert len(optuna.load_study(study_name="pg", storage=postgres_url).trials) == 2


# ----------------------------------------------------------------------------- a real kill
@pytest.mark.slow
def _kill_a_worker_mid_trial(out: Path, argv: list[str], study_name: str) -> int:
    """Start ``tune`` in its own process group, SIGKILL it once a trial runs; the number of
    trials the kill left RUNNING (0 when the trial seen running finished just before)."""
    cmd = [sys.executable, "-m", "bench_mlkan", "tune", *argv]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    db = out / "studies" / "optuna.db"
    deadline = time.monotonic() + 240
    running = []
    while time.monotonic() < deadline and not running:
        time.sleep(0.2)
        if db.exists():
            try:
                study = load(out, study_name)
                running = study.get_trials(states=(TrialState.RUNNING,))
            except Exception:  # noqa: BLE001 - the study is being created
                pass
    assert running, "the worker never started a trial"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(load(out, study_name).get_trials(states=(TrialState.RUNNING,)))


def test_a_killed_worker_process_is_retried_by_the_next_command(tmp_path):
    baseline = copy_baseline(tmp_path)
    long = ["--set", "task_options.size=small", "--pruner", "none"]
    study_name = f"{Path(baseline).name}.regression_rotated.w100"
    # a trial can finish between being seen running and the kill (nothing left to retry):
    # then try again in a fresh folder
    for attempt in range(3):
        out = tmp_path / f"attempt{attempt}"
        argv = tiny_args(out, baseline, *long, trials=2)
        argv[argv.index("--budget") + 1] = "100"
        stale = _kill_a_worker_mid_trial(out, argv, study_name)
        if stale:
            break
    assert stale == 1, "three kills in a row missed a running trial"
    assert tuning.tune_main(argv) == 0
    counts = tuning.trial_counts(load(out, study_name))
    assert counts["complete"] == 2 and counts["retried"] == 1 and counts["failed"] == 0


def test_level_pruning_skips_vcycle_transitions():
    """A V-cycle's restrict/correct transitions are not level ends: nothing is reported for
    them (a restriction to level 0 once reported step -1, which Optuna rejects)."""
    study = optuna.create_study()
    trial = study.ask()
    cb = objective_module.LevelPruning(trial, "train_mse")
    ends = [
        {"level": 1, "step": 5, "level_end_metrics": {"train_mse": 1e-2}},
        {"level": 0, "step": 9, "kind": "restrict", "level_end_metrics": {"train_mse": 1e-3}},
        {"level": 1, "step": 12, "kind": "correct", "level_end_metrics": {"train_mse": 1e-3}},
    ]

    class Module:
        refinements = ends

    class Trainer:
        should_stop = False

    cb.on_train_end(Trainer(), Module())
    assert cb.seen == 3
    assert study.trials[0].intermediate_values == {0: -2.0}


def test_level_pruning_reads_the_training_loss_at_level_ends():
    """A task ranked by its training loss (no such evaluation metric) is pruned on the
    refinement's ``loss_before``; once every such trial failed."""
    study = optuna.create_study()
    cb = objective_module.LevelPruning(study.ask(), "train_loss")

    class Module:
        refinements = [{"level": 1, "step": 5, "loss_before": 1e-3, "level_end_metrics": {}}]

    class Trainer:
        should_stop = False

    cb.on_train_end(Trainer(), Module())
    assert study.trials[0].intermediate_values == {0: -3.0}
