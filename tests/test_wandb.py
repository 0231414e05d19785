"""W&B as a leaderboard, tested offline: a bench with ``--wandb`` and ``WANDB_MODE=offline``
is read back from the run files it wrote (``tests/wandb_offline.py``, a reader independent
of W&B's and of ``bench_mlkan``): each run's config, its eval rows against work, summary,
tags, exit code and artifact; the leaderboard run's tables against numpy statistics of the
records."""

from __future__ import annotations

import base64
import hashlib
import json
import math

import numpy as np
import pytest
from wandb_offline import read_all  # tests/wandb_offline.py

from bench_mlkan import bench
from bench_mlkan import wandb_utils as W
from bench_mlkan.records import config_hash, read_record, record_files

FAIL_LR = 0.0123
TINY = {"task_options": {"size": "tiny"}, "optimizer_options": {"max_iter": 2}}


def profile_file(tmp_path):
    """kan_multilevel x 2 seeds (ok), mlp_small@fails (raises), mlp_small@diverges (blow-up)."""
    exps = [
        {"task": "regression_rotated", "seeds": [1, 2], "baselines": ["kan_multilevel"],
         "overrides": TINY, "schedule_scale": 0.03},
        {"task": "regression_rotated", "seeds": [1], "baselines": ["mlp_small"],
         "overrides": {**TINY, "lr": FAIL_LR}, "schedule_scale": 0.01, "variant": "fails"},
        {"task": "burgers_1d", "seeds": [1], "baselines": ["mlp_small"], "variant": "diverges",
         "overrides": {"task_options": {"size": "tiny"}, "schedule": [4], "lr": 100.0,
                       "blowup_factor": 1.5}},
    ]  # fmt: skip
    path = tmp_path / "wb.json"
    path.write_text(json.dumps({"description": "w&b test", "workers": 0, "experiments": exps}))
    return str(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "bench-test")
    for var in ("WANDB_DIR", "WANDB_ENTITY", "WANDB_API_KEY", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    from bench_mlkan import engine

    real = engine.train

    def train(config, **kw):
        if config.lr == FAIL_LR:
            raise RuntimeError("injected failure")
        return real(config, **kw)

    monkeypatch.setattr(engine, "train", train)


def md5_b64(path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_bench_wandb_offline_runs_and_leaderboard(tmp_path, offline, capsys):
    results = tmp_path / "out" / "results"
    argv = [
        "--profile",
        profile_file(tmp_path),
        "--results",
        str(results),
        "--wandb",
        "--no-render",
    ]
    assert bench.bench_main(argv) == 1  # a failed and a diverged run
    wandb_dir = tmp_path / "out" / "wandb"
    assert not (tmp_path / "wandb").exists()  # one folder: beside the records root
    runs = {r.run_id: r for r in read_all(wandb_dir)}
    recs = {p: read_record(p) for p in record_files(results / "wb")}
    assert len(recs) == 4 and len(runs) == 5  # 4 runs + the leaderboard
    by_status = {}
    for path, rec in recs.items():
        run = runs[rec["wandb"]["id"]]
        by_status[rec["status"]] = (rec, run, path)
        assert rec["wandb"]["path"] == f"bench-test/{run.run_id}" and run.project == "bench-test"
        # identity in the config
        c = run.config
        assert (c["baseline"], c["profile"], c["config_hash"], c["git_commit"]) == (
            rec["baseline"], "wb", config_hash(rec["config"]), rec["git_commit"]
        )  # fmt: skip
        assert (c["family"], c["strategy"]) == (
            ("kan", "multilevel") if rec["baseline"] == "kan_multilevel" else ("mlp", "single")
        )
        assert c["lr"] == rec["config"]["lr"] and c["row"] == bench.record_row(rec)
        # status: summary, tags, exit code
        assert run.summary["status"] == rec["status"] and rec["status"] in run.tags
        assert run.exit_code == (0 if rec["status"] == "ok" else 1)
        assert {rec["task"], rec["baseline"], "wb"} <= set(run.tags)
    assert set(by_status) == {"ok", "failed", "diverged"}
    assert "injected failure" in by_status["failed"][1].summary["error"]
    assert by_status["diverged"][1].summary["diverged/step"] == 1
    # eval rows against work and step: every level end, then the final evaluation
    rec, run, path = by_status["ok"]
    assert run.metrics["eval/*"] == "work" and run.metrics["train/*"] == "work"
    rows = [h for h in run.history if any(k.startswith("eval/") for k in h)]
    expected = [*rec["eval_history"], {"work": rec["work"], "step": rec["steps"],
                                        **rec["final_metrics"]}]  # fmt: skip
    assert len(rec["eval_history"]) == len(rec["refinements"]) >= 1
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert row["work"] == want["work"] and row["trainer/global_step"] == want["step"]
        assert row["eval/rel_l2"] == pytest.approx(want["rel_l2"], rel=1e-12)
    assert run.summary["final/train_mse"] == pytest.approx(rec["final_metrics"]["train_mse"])
    train_rows = [h for h in run.history if "train/loss" in h]
    assert len(train_rows) == rec["steps"] and all("work" in h for h in train_rows)
    # the artifact: record, weights, plot - byte for byte
    (art,) = run.artifacts
    assert art["type"] == "run-record"
    assert art["name"] == f"run-regression_rotated-kan_multilevel-seed{rec['seed']}"
    assert art["files"]["record.json"] == md5_b64(path)
    assert art["files"]["weights.pt"] == md5_b64(path.with_suffix(".pt"))
    (plot,) = [k for k in art["files"] if k.startswith("plots/")]
    assert (wandb_dir / "plots" / plot.removeprefix("plots/")).exists()
    failed_art = by_status["failed"][1].artifacts[0]
    assert set(failed_art["files"]) == {"record.json"}  # no weights, no history to plot
    # the leaderboard: numbers equal numpy's over the records
    (board,) = [r for r in runs.values() if "leaderboard" in r.tags]
    tables = board.tables("leaderboard/")
    assert set(tables) == {"leaderboard/regression_rotated", "leaderboard/burgers_1d"}
    t = tables["leaderboard/regression_rotated"]
    cols = t["columns"]
    rows_by = {row[0]: dict(zip(cols, row)) for row in t["data"]}
    ok = sorted(
        (r for r in recs.values() if r["baseline"] == "kan_multilevel"), key=lambda r: r["seed"]
    )
    values = np.array([r["final_metrics"]["train_mse"] for r in ok])
    k = rows_by["kan_multilevel"]
    assert k["metric"] == "train_mse" and k["seeds_ok"] == 2
    assert k["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert k["median"] == pytest.approx(np.median(values), rel=1e-12)
    assert k["sd"] == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert k["gmean"] == pytest.approx(np.exp(np.log(values).mean()), rel=1e-12)
    assert [k["seed 1"], k["seed 2"]] == pytest.approx(list(values), rel=1e-15)
    assert k["work"] == pytest.approx(np.mean([r["work"] for r in ok]))
    assert k["evaluations"] == pytest.approx(np.mean([r["evaluations"] for r in ok]))
    assert k["params"] == ok[0]["params"]
    assert k["runs"].split() == [f"bench-test/{r['wandb']['id']}" for r in ok]
    f = rows_by["mlp_small@fails"]
    assert (f["seeds_ok"], f["failed"], f["mean"], f["seed 1"]) == (0, 1, None, None)
    assert t["data"][0][0] == "kan_multilevel"  # sorted: rows with a mean first
    burgers = tables["leaderboard/burgers_1d"]
    d = dict(zip(burgers["columns"], burgers["data"][0]))
    assert (d["row"], d["diverged"], d["seeds_ok"]) == ("mlp_small@diverges", 1, 0)
    assert "leaderboard tables of wb" in capsys.readouterr().out


def test_wandb_disabled_writes_nothing(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    results = tmp_path / "out" / "results"
    prof = tmp_path / "one.json"
    prof.write_text(json.dumps({"workers": 0, "experiments": [
        {"task": "regression_rotated", "seeds": [1], "baselines": ["mlp_small"],
         "overrides": TINY, "schedule_scale": 0.01}]}))  # fmt: skip
    argv = ["--profile", str(prof), "--results", str(results), "--wandb", "--no-render"]
    assert bench.bench_main(argv) == 0
    assert not (tmp_path / "out" / "wandb").exists() and not (tmp_path / "wandb").exists()
    (path,) = record_files(results / "one")
    assert "wandb" not in read_record(path)


def fake(task, baseline, seed, status, value=None, variant=None, **kw):
    return {
        "task": task, "baseline": baseline, "variant": variant, "seed": seed, "status": status,
        "task_description": {"kind": "pinn"},
        "final_metrics": {"rel_l2": value} if value is not None else {},
        "work": kw.get("work", 10.0), "evaluations": kw.get("evaluations", 12),
        "params": kw.get("params", 100), "wandb": {"path": f"p/{baseline}{seed}", "url": None},
    }  # fmt: skip


def test_leaderboard_tables_are_numeric_and_match_numpy():
    a = [3e-3, 1e-3, 2e-3]
    records = [
        *(fake("poisson_2d", "kan_multilevel", s, "ok", v, work=s) for s, v in zip((1, 2, 3), a)),
        fake("poisson_2d", "mlp_small", 1, "ok", 5e-2),
        fake("poisson_2d", "mlp_small", 2, "diverged"),
        fake("poisson_2d", "mlp_small", 3, "failed"),
        fake("poisson_2d", "mlp_small", 1, "ok", 4e-2, variant="wide"),
    ]
    (task,) = W.leaderboard_tables(records).items()
    name, (cols, rows) = task
    assert name == "poisson_2d"
    assert cols[cols.index("max") + 1 : cols.index("work")] == ["seed 1", "seed 2", "seed 3"]
    r = {row[0]: dict(zip(cols, row)) for row in rows}
    k = r["kan_multilevel"]
    assert k["mean"] == pytest.approx(np.mean(a), rel=1e-15)
    assert k["median"] == 2e-3 and k["min"] == 1e-3 and k["max"] == 3e-3
    assert k["sd"] == pytest.approx(np.std(a, ddof=1), rel=1e-14)
    assert k["gmean"] == pytest.approx(math.prod(a) ** (1 / 3), rel=1e-14)
    assert k["work"] == 2.0 and k["runs"] == "p/kan_multilevel1 p/kan_multilevel2 p/kan_multilevel3"
    m = r["mlp_small"]
    assert (m["seeds_ok"], m["diverged"], m["failed"], m["mean"], m["sd"]) == (1, 1, 1, 5e-2, None)
    assert (m["seed 1"], m["seed 2"], m["seed 3"]) == (5e-2, None, None)
    assert [row[0] for row in rows] == ["kan_multilevel", "mlp_small@wide", "mlp_small"]
    for row in rows:  # every statistic is a number or None, never a formatted string
        for c in ("mean", "median", "sd", "gmean", "min", "max", "work", "evaluations", "params"):
            v = dict(zip(cols, row))[c]
            assert v is None or isinstance(v, int | float)
