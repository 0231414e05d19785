"""Bench runner: profile expansion, one-run records, resume by config, failures recorded."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")

from bench_mlkan import bench  # noqa: E402
from bench_mlkan.records import config_hash, read_record, record_path  # noqa: E402

TINY = {"task_options": {"size": "tiny"}, "optimizer_options": {"max_iter": 2}}


def tiny_profile(tmp_path, baselines=("kan_multilevel", "mlp_small"), seeds=(1,), extra=None):
    exp = {
        "task": "regression_rotated",
        "seeds": list(seeds),
        "baselines": list(baselines),
        "overrides": TINY,
        "schedule_scale": 0.03,
        **(extra or {}),
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"description": "test", "workers": 1, "experiments": [exp]}))
    return str(path)


def test_profiles_expand_with_the_papers_relative_budgets():
    for name in ("smoke", "quick", "paper"):
        profile = bench.load_profile(name)
        specs = bench.expand(profile)
        assert specs and len({(s.task, s.baseline, s.seed) for s in specs}) == len(specs)
    quick = {(s.task, s.baseline): s.config for s in bench.expand(bench.load_profile("quick"))}
    # regression keeps the paper's budgets exactly; Burgers is scaled by 1/2 uniformly
    assert quick["regression_rotated", "kan_multilevel"]["schedule"] == [32, 16, 8, 4]
    assert quick["regression_rotated", "kan_fine"]["schedule"] == [0, 0, 0, 16]
    assert quick["burgers_1d", "kan_multilevel"]["schedule"] == [400, 200, 100]
    assert quick["burgers_1d", "kan_coarse"]["schedule"] == [1600, 0, 0]
    paper = {
        (s.task, s.baseline, s.seed): s.config for s in bench.expand(bench.load_profile("paper"))
    }
    assert paper["burgers_1d", "kan_multilevel", 1274]["schedule"] == [800, 400, 200]
    assert paper["regression_rotated", "kan_coarse", 1238]["task_options"] == {"size": "paper"}


def test_unknown_profile_and_baseline_fail_listing_known_ones(tmp_path):
    with pytest.raises(SystemExit, match="known: .*quick"):
        bench.load_profile("nope")
    with pytest.raises(KeyError, match="known: .*kan_multilevel"):
        bench.expand(bench.load_profile(tiny_profile(tmp_path, baselines=["kan_multilvl"])))


def test_parse_sets_and_schedule_scaling():
    assert bench.parse_sets(["a.b=1", "schedule=[2,0,3]", "name=x"]) == {
        "a": {"b": 1},
        "schedule": [2, 0, 3],
        "name": "x",
    }
    assert bench.scale_schedule([32, 16, 8, 4], 0.1) == [3, 2, 1, 1]
    assert bench.scale_schedule([0, 0, 16], 0.01) == [0, 0, 1]


def test_run_command_writes_exactly_that_record(tmp_path):
    out = tmp_path / "one.json"
    code = bench.run_main(
        [
            "--task",
            "regression_rotated",
            "--baseline",
            "kan_multilevel",
            "--seed",
            "7",
            "--set",
            "task_options.size=tiny",
            "schedule=[2,1]",
            "optimizer_options.max_iter=2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = read_record(out)
    assert (
        record["status"] == "ok" and record["seed"] == 7 and record["config"]["schedule"] == [2, 1]
    )
    assert record["config_hash"] == config_hash(record["config"])
    for key in (
        "git_commit",
        "environment",
        "params",
        "params_per_level",
        "steps",
        "work",
        "work_unit",
        "work_macs",
        "wall_clock",
        "final_metrics",
        "history",
        "refinements",
        "device",
    ):
        assert key in record
    assert len(record["refinements"]) == 1 and record["steps"] == 3
    weights = torch.load(out.with_suffix(".pt"), weights_only=False)
    assert sorted(weights["levels"]) == [0, 1]


def test_bench_resumes_and_records_failures(tmp_path, capsys):
    results = tmp_path / "results"
    profile = tiny_profile(
        tmp_path, extra={"baseline_overrides": {"mlp_small": {"task_options": {"bogus": 1}}}}
    )
    args = ["--profile", profile, "--results", str(results), "--workers", "1", "--no-render"]
    assert bench.bench_main(args) == 0
    ok = read_record(record_path(results / "tiny", "regression_rotated", "kan_multilevel", 1))
    failed = read_record(record_path(results / "tiny", "regression_rotated", "mlp_small", 1))
    assert ok["status"] == "ok"
    assert failed["status"] == "failed" and "bogus" in failed["error"]
    capsys.readouterr()
    # a second bench finds both records (same configs) and runs nothing
    assert bench.bench_main(args) == 0
    assert "2 already recorded, 0 to run" in capsys.readouterr().out
    # a changed config is rerun; an unchanged one is kept
    path = record_path(results / "tiny", "regression_rotated", "kan_multilevel", 1)
    stale = read_record(path)
    stale["config_hash"] = "something-else"
    path.write_text(json.dumps(stale))
    assert bench.bench_main(args) == 0
    assert "1 already recorded, 1 to run" in capsys.readouterr().out
    assert read_record(path)["config_hash"] == ok["config_hash"]


@pytest.mark.slow
def test_two_worker_processes(tmp_path):
    results = tmp_path / "results"
    profile = tiny_profile(tmp_path, baselines=["kan_coarse", "mlp_small"], seeds=(1, 2))
    assert (
        bench.bench_main(
            ["--profile", profile, "--results", str(results), "--workers", "2", "--no-render"]
        )
        == 0
    )
    records = sorted(results.glob("tiny/*/*/seed*.json"))
    assert len(records) == 4 and all(read_record(p)["status"] == "ok" for p in records)
