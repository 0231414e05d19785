"""Faults of the bench: dead workers, signals to the bench, two benches on one folder, bad
input (exit codes and one-line errors), corrupt/incomplete records, strict JSON."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

from bench_mlkan import bench, records, workers  # noqa: E402
from bench_mlkan import reporting as LB  # noqa: E402
from bench_mlkan.records import Record, read_record, record_path  # noqa: E402

TINY = {"task_options": {"size": "tiny"}, "optimizer_options": {"max_iter": 2}}
REPO = Path(__file__).resolve().parent.parent
#: a run that takes minutes (killed long before it ends)
LONG = {"schedule": [100000, 0, 0, 0]}


def write_profile(tmp_path, baselines, baseline_overrides=None, name="faults", workers=2):
    exp = {
        "task": "regression_rotated",
        "seeds": [1],
        "baselines": list(baselines),
        "overrides": TINY,
        "schedule_scale": 0.03,
        "baseline_overrides": baseline_overrides or {},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"description": "test", "workers": workers, "experiments": [exp]}))
    return path


def start_bench(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench_mlkan", "bench", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class Output:
    """Collects a subprocess's lines in a thread; ``wait_for(pred)`` returns a matching line."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pred, timeout: float = 120.0) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [ln for ln in self.lines if pred(ln)]
                if hits:
                    return hits
                left = deadline - time.monotonic()
                assert left > 0, "timed out; output so far:\n" + "\n".join(self.lines)
                self.cond.wait(left)

    def text(self) -> str:
        self.thread.join(timeout=10)
        return "\n".join(self.lines)


def worker_pid(line: str) -> int:
    return int(line.rsplit("worker pid ", 1)[1].rstrip(")"))


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (/proc, no psutil)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


# ----------------------------------------------------------------------------- dead worker
def test_killed_worker_is_recorded_failed_and_a_second_bench_refuses(tmp_path, capsys):
    """SIGKILL one worker mid-run: that run is failed (naming the signal), the others are ok,
    the bench finishes and exits 1; meanwhile a second bench on the folder refuses."""
    profile = write_profile(
        tmp_path, ["kan_coarse", "kan_multilevel", "mlp_small"], {"kan_coarse": LONG}
    )
    results = tmp_path / "results"
    args = ["--profile", str(profile), "--results", str(results), "--workers", "2"]
    proc = start_bench([*args, "--no-render"])
    out = Output(proc)
    try:
        line = out.wait_for(lambda ln: "start regression_rotated/kan_coarse/seed1" in ln)[0]
        victim = worker_pid(line)
        # the second bench on the same folder refuses at once (while the first still runs),
        # naming the holder
        assert bench.bench_main([*args, "--no-render"]) == 2
        err = capsys.readouterr().err.strip()
        assert proc.poll() is None and alive(victim)
        assert err.startswith("error: another bench") and f"pid {proc.pid}" in err
        assert len(err.splitlines()) == 1
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.text()
    folder = results / "faults"
    dead = read_record(record_path(folder, "regression_rotated", "kan_coarse", 1))
    assert dead["status"] == "failed"
    assert dead["error"].strip().splitlines()[-1].startswith("worker killed by signal 9 (SIGKILL")
    for name in ("kan_multilevel", "mlp_small"):
        assert read_record(record_path(folder, "regression_rotated", name, 1))["status"] == "ok"
    assert "kan_coarse/seed1: failed  worker killed by signal 9" in text
    assert (
        "finished 3 run(s)" in text
        and "2 ok, 1 failed: regression_rotated/kan_coarse/seed1" in text
    )
    assert not wait_dead([victim], 1.0)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow),
            pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
)  # fmt: skip
def test_killing_the_bench_kills_its_workers(tmp_path, sig):
    profile = write_profile(tmp_path, ["kan_coarse", "kan_fine"], {"kan_coarse": LONG,
                            "kan_fine": {"schedule": [0, 0, 0, 100000]}})  # fmt: skip
    results = tmp_path / "results"
    proc = start_bench(["--profile", str(profile), "--results", str(results), "--no-render"])
    out = Output(proc)
    try:
        lines = out.wait_for(lambda ln: " start " in ln and "worker pid" in ln)
        while len(lines) < 2:
            time.sleep(0.2)
            lines = out.wait_for(lambda ln: " start " in ln and "worker pid" in ln)
        pids = [worker_pid(ln) for ln in lines]
        assert all(alive(p) for p in pids)
        time.sleep(1.0)  # both are training now
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == (-sig if sig == signal.SIGKILL else 128 + sig)
    assert wait_dead(pids) == [], "worker processes outlived the bench"
    if sig != signal.SIGKILL:
        assert f"interrupted by {signal.Signals(sig).name}" in out.text()
    # nothing was recorded for the interrupted runs: a rerun resumes them
    assert not list((results / "faults").glob("*/*/seed*.json"))


def test_worker_death_is_described():
    assert workers.describe_exit(-9).startswith("worker killed by signal 9 (SIGKILL - ")
    assert "out-of-memory" in workers.describe_exit(-9)
    assert workers.describe_exit(-11) == "worker killed by signal 11 (SIGSEGV - segmentation fault)"
    assert workers.describe_exit(3) == "worker exited with code 3 before reporting a result"


# ----------------------------------------------------------------------------- lock
def test_lock_refuses_then_waits(tmp_path, capsys):
    profile = write_profile(tmp_path, ["mlp_small"], workers=0)
    results = tmp_path / "results"
    args = ["--profile", str(profile), "--results", str(results), "--no-render"]
    with records.results_lock(results / "faults"):
        assert bench.bench_main(args) == 2
        err = capsys.readouterr().err
        assert f"(pid {os.getpid()})" in err and "--wait-lock" in err
        assert not list(results.glob("faults/*/*/seed*.json"))
    # --wait-lock: blocks until the holder lets go, then runs
    held, release = threading.Event(), threading.Event()

    def holder():
        with records.results_lock(results / "faults"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    assert bench.bench_main([*args, "--wait-lock"]) == 0
    assert release.is_set(), "the bench ran while another process held the lock"
    t.join()
    assert "waiting for the bench" in capsys.readouterr().out
    assert read_record(record_path(results / "faults", "regression_rotated", "mlp_small", 1))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tasks", "nosuchtask"], "--tasks nosuchtask: not in profile"),
        (["--baselines", "kan_multilvl"], "--baselines kan_multilvl: not in the selected"),
        (["--set", "lr=-1"], "regression_rotated/mlp_small/seed1: lr"),
        (["--set", "schedule=[0]"], "regression_rotated/mlp_small/seed1: schedule"),
        (["--set", "bogus_key=1"], "regression_rotated/mlp_small/seed1: bogus_key"),
        (["--set", "noequals"], "--set expects key=value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    profile = write_profile(tmp_path, ["mlp_small"], workers=0)
    results = tmp_path / "results"
    code = bench.bench_main(["--profile", str(profile), "--results", str(results), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not results.exists(), "nothing may be written before the input is valid"


def test_unknown_names_list_the_known_ones(tmp_path, capsys):
    profile = write_profile(tmp_path, ["mlp_small"], workers=0)
    assert bench.bench_main(["--profile", str(profile), "--tasks", "nosuchtask"]) == 2
    err = capsys.readouterr().err
    assert "its tasks: regression_rotated" in err and "known: " in err and "burgers_1d" in err
    assert bench.bench_main(["--profile", "nosuchprofile"]) == 2
    assert "known: " in capsys.readouterr().err
    bad = write_profile(tmp_path, ["kan_multilvl"], name="bad", workers=0)
    assert bench.bench_main(["--profile", str(bad)]) == 2
    assert "unknown baseline 'kan_multilvl'; known: " in capsys.readouterr().err


def test_traceback_only_on_request(tmp_path, capsys):
    profile = write_profile(tmp_path, ["mlp_small"], workers=0)
    args = ["--profile", str(profile), "--set", "lr=-1"]
    assert bench.bench_main([*args, "--traceback"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unwritable_folders_are_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    profile = write_profile(tmp_path, ["mlp_small"], workers=0)
    code = bench.bench_main(["--profile", str(profile), "--results", str(blocker / "sub")])
    assert code == 2 and "--results folder" in capsys.readouterr().err
    results = tmp_path / "results"
    code = bench.bench_main(
        ["--profile", str(profile), "--results", str(results), "--leaderboards", str(blocker)]
    )
    assert code == 2 and "--leaderboards folder" in capsys.readouterr().err
    assert not list(results.glob("*/*/*/seed*.json"))
    code = bench.run_main(
        ["--task", "regression_rotated", "--baseline", "mlp_small", "--seed", "1",
         "--out", str(blocker / "x.json")]
    )  # fmt: skip
    assert code == 2 and "--out folder" in capsys.readouterr().err


def fail_when_lr(monkeypatch, lr: float) -> None:
    """Make ``engine.train`` raise for configs with this learning rate (a run-time failure
    that no config validation can foresee; in-process runs only)."""
    from bench_mlkan import engine

    real = engine.train

    def train(config, **kw):
        if config.lr == lr:
            raise RuntimeError(f"injected failure at lr {lr}")
        return real(config, **kw)

    monkeypatch.setattr(engine, "train", train)


def test_failed_and_diverged_runs_exit_1_with_a_summary(tmp_path, capsys, monkeypatch):
    fail_when_lr(monkeypatch, 0.0123)
    profile = write_profile(
        tmp_path,
        ["kan_multilevel", "mlp_small", "mlp_large"],
        {"mlp_small": {"lr": 0.0123}, "mlp_large": {"lr": 1e200}},  # fails; diverges
        workers=0,
    )
    results = tmp_path / "results"
    code = bench.bench_main(["--profile", str(profile), "--results", str(results), "--no-render"])
    out = capsys.readouterr().out
    assert code == 1
    summary = [ln for ln in out.splitlines() if ln.startswith("finished 3 run(s)")]
    assert len(summary) == 1 and "1 ok, 1 diverged, 1 failed: " in summary[0]
    labels = summary[0].split("failed: ")[1].split(", ")
    assert sorted(labels) == [
        "regression_rotated/mlp_large/seed1",
        "regression_rotated/mlp_small/seed1",
    ]
    failed = read_record(record_path(results / "faults", "regression_rotated", "mlp_small", 1))
    last = failed["error"].strip().splitlines()[-1]
    assert last == "RuntimeError: injected failure at lr 0.0123"
    assert f"mlp_small/seed1: failed  {last}" in out


# ----------------------------------------------------------------------------- records
def test_records_are_strict_json_with_nonfinite_paths(tmp_path):
    rec = {
        "task": "t",
        "baseline": "b",
        "seed": 1,
        "status": "diverged",
        "diverged": {"step": 3, "loss": float("nan")},
        "history": [{"loss": 1.0}, {"loss": float("inf")}, {"loss": -math.inf}],
        "weird.key": {"x": float("nan")},
        "final_metrics": {},
    }
    path = tmp_path / "t" / "b" / "seed1.json"
    records.write_record(path, rec)
    text = path.read_text()

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads(text, parse_constant=refuse)  # strict: no NaN/Infinity tokens
    assert data["diverged"]["loss"] is None and data["history"][1]["loss"] is None
    assert data["nonfinite"] == {
        "diverged.loss": "nan",
        "history.1.loss": "inf",
        "history.2.loss": "-inf",
        "weird.key.x": "nan",
    }
    back = read_record(path)
    assert math.isnan(back["diverged"]["loss"]) and math.isnan(back["weird.key"]["x"])
    assert back["history"][1]["loss"] == math.inf and back["history"][2]["loss"] == -math.inf
    assert back["history"][0]["loss"] == 1.0
    # the leaderboard reads the floats back: a diverged row shows its non-finite loss
    assert LB.failure_reason(Record.from_dict(back)) == "diverged at step 3 (level ?, loss nan)"


def test_shipped_records_are_strict_and_complete():
    def refuse(token):
        raise ValueError(token)

    paths = records.record_files(records.SHIPPED_RESULTS / "quick")
    assert len(paths) >= 29
    for path in paths:
        data = json.loads(path.read_text(), parse_constant=refuse)
        assert data["profile"] == "quick" and data["weights_sha256"]
        read_record(path)  # raises when the .pt does not match


def test_missing_weights_make_a_record_incomplete(tmp_path, capsys):
    profile = write_profile(tmp_path, ["mlp_small"], workers=0)
    results = tmp_path / "results"
    args = ["--profile", str(profile), "--results", str(results), "--no-render"]
    assert bench.bench_main(args) == 0
    path = record_path(results / "faults", "regression_rotated", "mlp_small", 1)
    rec = json.loads(path.read_text())
    assert rec["weights_sha256"] == records.sha256_file(path.with_suffix(".pt"))
    path.with_suffix(".pt").unlink()  # as if killed between the .pt and the .json
    with pytest.raises(records.RecordError, match="incomplete"):
        read_record(path)
    assert LB.load_records(results / "faults") == {}
    assert "skipping" in capsys.readouterr().err
    assert bench.bench_main(args) == 0
    out = capsys.readouterr().out
    assert "1 to run (1 rerun)" in out and "incomplete record" in out
    assert read_record(path)["status"] == "ok"


def test_corrupt_records_are_named_and_skipped(tmp_path, capsys):
    folder = tmp_path / "results" / "p"
    good = record_path(folder, "regression_rotated", "mlp_small", 1)
    records.write_record(good, {"task": "regression_rotated", "baseline": "mlp_small",
                                "seed": 1, "status": "failed", "error": "x"})  # fmt: skip
    bad = record_path(folder, "regression_rotated", "mlp_small", 2)
    bad.write_text(good.read_text()[:50])  # truncated
    loaded = LB.load_records(folder)
    assert [r.seed for r in loaded["regression_rotated"]["mlp_small"]] == [1]
    err = capsys.readouterr().err
    assert str(bad) in err and "unreadable record" in err
    written = LB.render(folder, tmp_path / "out", plots=False)
    assert (tmp_path / "out" / "regression_rotated.md").exists() and not written.errors


def test_leaderboard_cli_refuses_missing_or_empty_folders(tmp_path, capsys):
    out = tmp_path / "out"
    assert LB.leaderboard_main(["--results", str(tmp_path / "typo"), "--out", str(out)]) == 2
    assert "no records folder" in capsys.readouterr().err
    (tmp_path / "empty" / "quick").mkdir(parents=True)
    assert LB.leaderboard_main(["--results", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no records" in capsys.readouterr().err
    assert not out.exists()


def test_stale_temporaries_are_removed(tmp_path):
    folder = tmp_path / "p"
    (folder / "t" / "b").mkdir(parents=True)
    tmp = folder / "t" / "b" / ".seed1.pt.abc.tmp"
    tmp.write_text("partial")
    keep = folder / "t" / "b" / "seed1.json"
    keep.write_text("{}")
    assert records.remove_stale_temporaries(folder) == 1
    assert not tmp.exists() and keep.exists()
