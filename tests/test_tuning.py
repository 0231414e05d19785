"""Optuna studies: search spaces, the trial queue, workers, pruning, retry, resume, storages.

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
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from bench_mlkan import tuning  # noqa: E402
from bench_mlkan.baselines import BASELINES, baseline_config, baseline_tasks  # noqa: E402
from bench_mlkan.baselines import ROOT as BASELINES_ROOT  # noqa: E402
from bench_mlkan.config import RunConfig  # noqa: E402
from bench_mlkan.engine import RunResult  # noqa: E402

TINY = [
    "task_options.size=tiny",
    "task_options.eval_points_per_dim=21",
    "optimizer_options.max_iter=5",
]


@pytest.fixture(autouse=True)
def _restore_baselines():
    """Tests register private baseline copies; other test modules must not see them."""
    before = dict(BASELINES)
    yield
    BASELINES.clear()
    BASELINES.update(before)


def tiny_args(tmp_path: Path, baseline: str, *extra: str, trials: int = 2) -> list[str]:
    argv = ["--task", "regression_rotated", "--baseline", baseline, "--trials", str(trials)]
    argv += ["--budget", "8", "--studies-dir", str(tmp_path / "studies"), "--seed", "1234"]
    argv += ["--heartbeat", "1", "--grace", "10", "--sampler-seed", "0"]
    for item in TINY:
        argv += ["--set", item]
    return argv + list(extra)


def copy_baseline(tmp_path: Path, name: str = "kan_multilevel") -> str:
    """A private copy of a baseline folder (tuned/ results land there, not in the repo)."""
    dest = tmp_path / "baselines" / f"tune_test_{uuid.uuid4().hex[:8]}"
    shutil.copytree(BASELINES_ROOT / name, dest, ignore=shutil.ignore_patterns("tuned"))
    space_path = dest / "search_space.json"
    space = json.loads(space_path.read_text())
    if "budget_fractions" in space["parameters"]:
        # at most 2 levels: with a budget of 8 every split buys a step (4 levels may not)
        space["parameters"]["budget_fractions"]["levels"] = {"low": 1, "high": 2}
        space_path.write_text(json.dumps(space))
    return str(dest)


def load(tmp_path: Path, study: str, storage: str | None = None) -> optuna.Study:
    url = storage or f"sqlite:///{tmp_path / 'studies' / study / 'study.db'}"
    if tuning.is_journal(url):
        storage_obj = tuning.make_storage(url)
    else:
        storage_obj = url
    return optuna.load_study(study_name=study, storage=storage_obj)


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
        return RunResult(config=config, status="ok", final_metrics={"test_mse": outcome}, steps=4)

    train.calls = calls
    return train


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
    assert tuning.parse_sets(["a.b=3", "c=adam", "d=[0.5, 0.5]"]) == {
        "a.b": 3,
        "c": "adam",
        "d": [0.5, 0.5],
    }


def test_every_baseline_has_a_space_whose_trials_are_valid_configs():
    folders = sorted(p.parent for p in BASELINES_ROOT.glob("*/config.json"))
    assert folders
    for folder in folders:
        name = folder.name
        assert (folder / "search_space.json").exists(), name
        for task in baseline_tasks(name):
            spec = tuning.StudySpec(task=task, baseline=name, budget=64.0, metric="rel_l2")
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


def test_set_fixes_a_field_and_removes_it_from_the_space():
    spec = tuning.StudySpec(
        task="regression_rotated",
        baseline="kan_multilevel",
        budget=8.0,
        metric="test_mse",
        sets={"lr": 0.5, "budget_fractions": [0.5, 0.5], "model_options.grid_size": 3},
    )
    assert spec.space() == {}
    config, tuned = tuning.trial_config(spec, optuna.trial.FixedTrial({}))
    assert config["lr"] == 0.5 and config["budget_fractions"] == [0.5, 0.5]
    assert config["model_options"]["grid_size"] == 3 and config["model_options"]["widths"]
    assert tuned == {
        "lr": 0.5,
        "budget_fractions": [0.5, 0.5],
        "model_options": {"grid_size": 3},
        "work_budget": 8.0,
    }


# ----------------------------------------------------------------------------- workers
def test_two_workers_finish_the_study_between_them_and_feed_the_bench(tmp_path):
    baseline = copy_baseline(tmp_path)
    name = Path(baseline).name
    argv = tiny_args(tmp_path, baseline, "--workers", "2", "--pruner", "none", trials=4)
    assert tuning.tune_main(argv) == 0

    study_name = f"{name}.regression_rotated.w8"
    study = load(tmp_path, study_name)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # no lost, no extra trial
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert 1 <= len(workers) <= 2
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)  # ran in the workers
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # no duplicate

    # results: the tuned config feeds baseline_config(tuned=True), the summary exists
    best = min(trials, key=lambda t: t.value)
    tuned = json.loads((Path(baseline) / "tuned" / "regression_rotated.json").read_text())
    assert tuned["trial"] == best.number and tuned["value"] == best.value
    assert tuned["study"] == study_name and tuned["metric"] == "log10 test_mse"
    config = baseline_config(name, "regression_rotated", seed=1235, tuned=True)
    assert config.lr == best.params["lr"] and config.work_budget == 8.0
    assert config.budget_fractions == tuned["config"]["budget_fractions"]
    assert config.model_options["grid_size"] == best.params["model_options.grid_size"]
    assert config.seed == 1235
    config.validate()
    folder = tmp_path / "studies" / study_name
    summary = (folder / "README.md").read_text()
    assert "| 4 | 0 | 0 | 0 | 0 | 0 |" in summary and "Parameter importances" in summary
    assert (folder / "history.png").stat().st_size > 1000


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
    assert not (Path(baseline) / "tuned").exists()  # no complete trial: nothing to write


def test_diverged_and_failed_trials_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    fake = fake_train(["diverged", "failed", RuntimeError("crash"), 1e-3])
    monkeypatch.setattr(tuning, "train", fake)
    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--storage", "journal", "--wandb", trials=4)
    assert tuning.tune_main(argv) == 0  # --wandb: off under WANDB_MODE=disabled, no error
    study_name = f"{Path(baseline).name}.regression_rotated.w8"
    url = str(tmp_path / "studies" / study_name / "journal.log")
    trials = load(tmp_path, study_name, url).get_trials()
    states = [t.state for t in trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "diverged" in trials[0].user_attrs["reason"]
    assert "boom" in trials[1].user_attrs["error"]
    assert "crash" in trials[2].user_attrs["error"]
    assert trials[3].value == pytest.approx(-3.0)
    assert tuning.trial_counts(load(tmp_path, study_name, url))["finished"] == 4


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_dead_workers_trial_is_failed_and_retried(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(tuning, "train", fake_train([1e-2]))
    baseline = copy_baseline(tmp_path)
    args = tuning.parse_args(tiny_args(tmp_path, baseline, "--storage", kind, trials=2))
    spec, url = tuning.spec_from_args(args)
    storage = tuning.make_storage(url, heartbeat=1, grace=1)
    study = tuning.prepare_study(storage, spec.study_name, 2, spec.meta())
    # a worker claims a trial, suggests its parameters, beats once and dies
    trial_id = tuning._pop_waiting(storage, study)
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
    monkeypatch.setattr(tuning, "train", fake)
    baseline = copy_baseline(tmp_path)
    argv = tiny_args(tmp_path, baseline, "--storage", "journal", trials=3)
    assert tuning.tune_main(argv) == 130  # Ctrl-C during the second trial
    study_name = f"{Path(baseline).name}.regression_rotated.w8"
    url = str(tmp_path / "studies" / study_name / "journal.log")
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
    monkeypatch.setattr(tuning, "train", fake_train([1e-2]))
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

    monkeypatch.setattr(tuning.subprocess, "Popen", FakePopen)
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
    tuned = json.loads((Path(baseline) / "tuned" / "regression_rotated.json").read_text())
    assert tuned["storage"] == postgres_url and tuned["trial"] == study.best_trial.number
    # a second command joining the finished study adds nothing
    assert tuning.tune_main(argv) == 0
    assert len(optuna.load_study(study_name="pg", storage=postgres_url).trials) == 2


# ----------------------------------------------------------------------------- a real kill
@pytest.mark.slow
def test_a_killed_worker_process_is_retried_by_the_next_command(tmp_path):
    baseline = copy_baseline(tmp_path)
    long = ["--set", "task_options.size=small", "--pruner", "none"]
    argv = tiny_args(tmp_path, baseline, *long, trials=2)
    argv[argv.index("--budget") + 1] = "100"
    cmd = [sys.executable, "-m", "bench_mlkan", "tune", *argv]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    study_name = f"{Path(baseline).name}.regression_rotated.w100"
    db = tmp_path / "studies" / study_name / "study.db"
    deadline = time.monotonic() + 240
    running = []
    while time.monotonic() < deadline and not running:
        time.sleep(1)
        if db.exists():
            try:
                study = load(tmp_path, study_name)
                running = study.get_trials(states=(TrialState.RUNNING,))
            except Exception:  # noqa: BLE001 - the study is being created
                pass
    assert running, "the worker never started a trial"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tuning.tune_main(argv) == 0
    counts = tuning.trial_counts(load(tmp_path, study_name))
    assert counts["complete"] == 2 and counts["retried"] == 1 and counts["failed"] == 0
