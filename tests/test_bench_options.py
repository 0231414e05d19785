"""The bench where users live: a task and a baseline from a plugin file outside the
repository (through spawned workers), a bench killed mid-run that resumes from its
checkpoints to the same numbers, outputs under $BENCH_MLKAN_HOME, Lightning loggers, the
CLI's help, one-line --set errors and config warnings printed once."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench_mlkan import bench, home
from bench_mlkan.records import read_record, record_files

REPO = Path(__file__).resolve().parent.parent
TINY = {"task_options": {"size": "tiny"}, "optimizer_options": {"max_iter": 2}}

PLUGIN = textwrap.dedent(
    """
    import os
    import signal
    import time
    from pathlib import Path

    from bench_mlkan.baselines import BASELINES
    from bench_mlkan.tasks import TASKS, RotatedRegression


    class PluginRegression(RotatedRegression):
        '''regression_rotated whose process kills its parent (the bench) at training step
        $KILL_AT while the file $KILL_MARKER exists (the marker is removed first).'''

        name = "plugin_regression"

        def loss_terms(self, model, batch, state, update_state=False):
            if update_state:
                self.steps = getattr(self, "steps", 0) + 1
                marker = os.environ.get("KILL_MARKER")
                if marker and os.path.exists(marker) and self.steps == int(os.environ["KILL_AT"]):
                    os.unlink(marker)
                    os.kill(os.getppid(), signal.SIGKILL)
                    time.sleep(60)  # PR_SET_PDEATHSIG ends this worker with the bench
            return super().loss_terms(model, batch, state, update_state)


    if "plugin_regression" not in TASKS:
        TASKS.register("plugin_regression", PluginRegression)
    if "plugin_kan" not in BASELINES:
        BASELINES.register("plugin_kan", Path(__file__).parent / "plugin_kan")
    """
)

BASELINE = {
    "description": "a user's recipe: spline KAN, Adam, two levels",
    "family": "kan",
    "strategy": "multilevel",
    "defaults": {"model": "kan", "precision": "64"},
    "tasks": {
        "plugin_regression": {
            "task_options": {"size": "tiny"},
            "model_options": {"widths": [2, 5, 1], "grid_size": 3, "degree": 3},
            "optimizer": "adam",
            "lr": 0.01,
            "schedule": [6, 6],
        }
    },
}


@pytest.fixture
def user_dir(tmp_path):
    """A plugin file, its baseline folder and a profile, outside the repository."""
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "plugin_kan").mkdir()
    (tmp_path / "plugin_kan" / "config.json").write_text(json.dumps(BASELINE))
    profile = {
        "description": "plugin test",
        "workers": 2,
        "experiments": [
            {"task": "plugin_regression", "seeds": [1, 2], "baselines": ["plugin_kan"]},
        ],
    }
    (tmp_path / "plugin_profile.json").write_text(json.dumps(profile))
    return tmp_path


def run_bench(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    full = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    full.pop("BENCH_MLKAN_PLUGINS", None)
    full.pop("BENCH_MLKAN_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "bench_mlkan", "bench", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def numbers(record: dict) -> dict:
    """What a run computed (everything but times and paths)."""
    timeless = [{k: v for k, v in h.items() if k != "wall_clock"} for h in record["eval_history"]]
    return {
        "final_metrics": record["final_metrics"],
        "history": record["history"],
        "eval_history": timeless,
        "refinements": record["refinements"],
        "work": record["work"],
        "steps": record["steps"],
        "params": record["params"],
        "evaluations": record["evaluations"],
        "weights_sha256": record["weights_sha256"],
    }


@pytest.mark.slow  # two bench processes with spawned workers (~45 s on 2 cores)
def test_plugin_task_and_baseline_run_in_two_workers(user_dir):
    out = run_bench(
        user_dir, "--profile", "plugin_profile.json", "--plugin", "plugin.py",
        "--workers", "2", "--no-render",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    paths = record_files(user_dir / "runs" / "results" / "plugin_profile")
    recs = [read_record(p) for p in paths]
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    assert {r["task"] for r in recs} == {"plugin_regression"}
    pids = {line.rsplit("pid ", 1)[1].rstrip(")") for line in out.stdout.splitlines()
            if " start " in line}  # fmt: skip
    assert len(pids) == 2  # two worker processes, each imported the plugin
    # without the plugin the task is unknown: one line, exit 2
    bad = run_bench(user_dir, "--profile", "plugin_profile.json", "--no-render")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "plugin_kan" in bad.stderr or "plugin_regression" in bad.stderr


@pytest.mark.slow  # three bench processes (~80 s on 2 cores)
def test_a_killed_bench_resumes_from_its_checkpoint_to_the_same_numbers(user_dir):
    (user_dir / "plugin_profile.json").write_text(json.dumps({
        "workers": 1,
        "experiments": [{"task": "plugin_regression", "seeds": [1], "baselines": ["plugin_kan"]}],
    }))  # fmt: skip
    args = ["--profile", "plugin_profile.json", "--plugin", "plugin.py", "--workers", "1",
            "--no-render", "--checkpoint-every", "4"]  # fmt: skip
    marker = user_dir / "kill-once"
    marker.touch()
    killed = run_bench(user_dir, *args, env={"KILL_MARKER": str(marker), "KILL_AT": "10"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = user_dir / "runs" / "results" / "plugin_profile" / "plugin_regression" / "plugin_kan"
    assert not (folder / "seed1.json").exists()
    saved = sorted(p.name for p in (folder / "seed1.ckpt").glob("*.ckpt"))
    assert saved == ["last.ckpt", "step4.ckpt", "step8.ckpt"]
    resumed = run_bench(user_dir, *args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = read_record(folder / "seed1.json")
    assert record["resumed_from_step"] == 8 and record["steps"] == 12
    assert not (folder / "seed1.ckpt").exists()  # removed once the record is written
    assert record["config"]["checkpoint_dir"] is None  # the identity is the plain config
    # the same run without interruption, in another folder: the same numbers, bit for bit
    clean = run_bench(user_dir, *args[:-2], "--checkpoint-every", "0", "--results", "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    reference = read_record(
        user_dir / "clean" / "plugin_profile" / "plugin_regression" / "plugin_kan" / "seed1.json"
    )
    assert "resumed_from_step" not in reference
    assert reference["config_hash"] == record["config_hash"]
    assert numbers(record) == numbers(reference)
    assert [r["level"] for r in record["refinements"]] == [1]


def test_checkpoint_policy():
    spec = bench.RunSpec("t", "b", 1, {"schedule": [600, 300]})
    assert bench.checkpoint_every_for(spec, 3600.0, None) == 15  # 900 steps in 1 h: 60 s each
    assert bench.checkpoint_every_for(spec, 100.0, None) == 0  # short runs: none
    assert bench.checkpoint_every_for(spec, None, None) == 0  # <= 1000 steps, no estimate
    long = bench.RunSpec("t", "b", 1, {"schedule": [3000]})
    assert bench.checkpoint_every_for(long, None, None) == bench.CHECKPOINT_FALLBACK_STEPS
    assert (
        bench.checkpoint_every_for(long, 1e6, 7) == 7
        and bench.checkpoint_every_for(long, 1e6, 0) == 0
    )


def test_vcycle_never_checkpoints_and_restarts(tmp_path, capsys):
    cfg = {"schedule": [3000], "strategy_name": "vcycle"}
    spec = bench.RunSpec("t", "b", 1, cfg)
    assert not bench.resumable(cfg) and bench.resumable({"schedule": [3000]})
    assert bench.checkpoint_every_for(spec, 1e6, None) == 0
    assert bench.checkpoint_every_for(spec, 1e6, 7) == 0
    from bench_mlkan.config import RunConfig

    config = RunConfig.from_dict({"task": "regression_rotated", **cfg})
    out = tmp_path / "seed1.json"
    folder = bench.checkpoint_dir(out)
    folder.mkdir(parents=True)
    (folder / "step10.ckpt").write_bytes(b"left by a killed run")
    same, step = bench.prepare_checkpoints(config, out, "id", 0)
    assert step is None and same.resume_from is None and not folder.exists()
    assert "restarting from step 0" in capsys.readouterr().out


def test_outputs_go_to_bench_mlkan_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_MLKAN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"workers": 0, "experiments": [
        {"task": "regression_rotated", "seeds": [1], "baselines": ["mlp_small"],
         "overrides": TINY, "schedule_scale": 0.01}]}))  # fmt: skip
    assert home.default_results() == tmp_path / "home" / "runs" / "results"
    assert bench.bench_main(["--profile", str(prof), "--logger", "csv"]) == 0
    runs = tmp_path / "home" / "runs"
    assert len(record_files(runs / "results" / "p")) == 1
    assert (runs / "leaderboards" / "p" / "regression_rotated.md").exists()
    (metrics,) = (runs / "logs" / "p" / "regression_rotated" / "mlp_small").glob(
        "seed1/metrics.csv"
    )
    rows = list(csv.DictReader(metrics.open()))
    rec = read_record(record_files(runs / "results" / "p")[0])
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses == [h["loss"] for h in rec["history"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "p.json"]


def test_every_option_has_help_and_each_command_ends_with_examples():
    for parser in (bench._parser_bench(), bench._parser_run()):
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.option_strings} has no help"
        text = parser.format_help()
        examples = text.split("examples:")[1]
        assert examples.count("python -m bench_mlkan ") >= 2


def test_set_values_are_coerced_and_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "r.json")
    base = ["--task", "regression_rotated", "--baseline", "mlp_small", "--seed", "1", "--out", out]
    assert bench.run_main([*base, "--set", "lr=fast"]) == 2
    err = capsys.readouterr().err
    assert err == "error: regression_rotated/mlp_small/seed1: lr: expected a number, got 'fast'\n"
    profile = bench.load_profile("smoke")
    sets = bench.parse_sets(["lr=2", "precision=64", "warmup_steps=3.0"])
    (spec, *_) = bench.expand(profile, ["regression_rotated"], ["mlp_small"], extra=sets)
    assert (spec.config["lr"], spec.config["precision"], spec.config["warmup_steps"]) == (
        2.0, "64", 3,
    )  # fmt: skip
    assert type(spec.config["lr"]) is float and type(spec.config["warmup_steps"]) is int


def test_config_warnings_are_printed_once_each(tmp_path, capsys):
    from bench_mlkan.records import results_lock

    prof = tmp_path / "w.json"
    prof.write_text(json.dumps({"workers": 0, "experiments": [
        {"task": "poisson_2d", "seeds": [1, 2, 3], "baselines": ["kan_multilevel", "mlp_medium"],
         "overrides": {"task_options": {"size": "tiny"}}}]}))  # fmt: skip
    argv = ["--profile", str(prof), "--results", str(tmp_path / "r"),
            "--set", "optimizer=lbfgs", "optimizer_options={}"]  # fmt: skip
    with results_lock(tmp_path / "r" / "w"):  # the bench stops at the lock, after its checks
        assert bench.bench_main(argv) == 2
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err  # one distinct warning for the 6 runs
    assert "optimizer lbfgs with a warm-up ramp" in warnings[0] and "(6 run(s):" in warnings[0]
    assert "another bench" in err


def test_records_carry_wall_time_and_evaluations_per_level(tmp_path):
    out = tmp_path / "r.json"
    argv = ["--task", "regression_rotated", "--baseline", "kan_multilevel", "--seed", "1",
            "--set", "task_options.size=tiny", "optimizer_options.max_iter=3",
            "schedule=[2,2]", "--out", str(out)]  # fmt: skip
    assert bench.run_main(argv) == 0
    rec = read_record(out)
    stats = rec["level_stats"]
    assert sorted(stats) == ["0", "1"]
    assert [stats[k]["steps"] for k in ("0", "1")] == [2, 2]
    per_step = {}
    for h in rec["history"]:
        per_step.setdefault(str(h["level"]), []).append(h["evaluations"])
    for level, evals in per_step.items():  # L-BFGS: several evaluations per step
        assert stats[level]["evaluations"] == sum(evals) > len(evals)
        assert stats[level]["wall_clock"] > 0
    assert rec["evaluations"] == sum(s["evaluations"] for s in stats.values())
    assert sum(s["wall_clock"] for s in stats.values()) == pytest.approx(
        rec["wall_clock"], rel=0.01
    )


def test_tensorboard_logger_needs_tensorboard(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a),
    )  # fmt: skip
    argv = ["--task", "regression_rotated", "--baseline", "mlp_small", "--seed", "1",
            "--out", str(tmp_path / "r.json"), "--logger", "tensorboard"]  # fmt: skip
    assert bench.run_main(argv) == 2
    assert "pip install tensorboard" in capsys.readouterr().err


def test_experiment_tuned_flag_uses_tuned_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_MLKAN_HOME", str(tmp_path))
    folder = tmp_path / "tuned" / "kan_multilevel"
    folder.mkdir(parents=True)
    (folder / "regression_rotated.json").write_text(json.dumps({"config": {"lr": 0.5}}))
    exp = {"task": "regression_rotated", "seeds": [1], "baselines": ["kan_multilevel"]}
    plain = bench.expand({"name": "p", "experiments": [exp]})
    tuned = bench.expand({"name": "p", "experiments": [{**exp, "tuned": True}]})
    assert plain[0].config["lr"] == 1.0 and tuned[0].config["lr"] == 0.5


def test_threads_per_worker_divides_the_cpus_and_honours_omp_num_threads(monkeypatch):
    import os

    from bench_mlkan.workers import threads_per_worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads_per_worker(1) == cpus
    assert threads_per_worker(cpus) == 1
    assert threads_per_worker(cpus * 4) == 1  # never zero
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_worker(1) == 3 and threads_per_worker(8) == 3
