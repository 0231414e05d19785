"""Bench runner: profile expansion, records per profile (and variant), record identity
(skip / retry / refuse / force), --set, estimates and ETA, comparison with references."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")

from bench_mlkan import bench, eta, records  # noqa: E402
from bench_mlkan import reporting as LB  # noqa: E402
from bench_mlkan.records import config_hash, read_record, record_path  # noqa: E402

TINY = {"task_options": {"size": "tiny"}, "optimizer_options": {"max_iter": 2}}
FAIL_LR = 0.0123  # engine.train raises for this learning rate (see fail_when_lr)


def tiny_profile(tmp_path, baselines=("kan_multilevel", "mlp_small"), seeds=(1,), extra=None,
                 name="tiny", more=()):  # fmt: skip
    exp = {
        "task": "regression_rotated",
        "seeds": list(seeds),
        "baselines": list(baselines),
        "overrides": TINY,
        "schedule_scale": 0.03,
        **(extra or {}),
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"description": "test", "workers": 0, "experiments": [exp, *more]}))
    return str(path)


@pytest.fixture
def fail_lr(monkeypatch):
    """``engine.train`` raises for configs with lr == FAIL_LR (in-process runs only)."""
    from bench_mlkan import engine

    real = engine.train

    def train(config, **kw):
        if config.lr == FAIL_LR:
            raise RuntimeError("injected failure")
        return real(config, **kw)

    monkeypatch.setattr(engine, "train", train)


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
    with pytest.raises(bench.UsageError, match="known: .*quick"):
        bench.load_profile("nope")
    with pytest.raises(bench.UsageError, match="known: .*kan_multilevel"):
        bench.expand(bench.load_profile(tiny_profile(tmp_path, baselines=["kan_multilvl"])))
    with pytest.raises(bench.UsageError, match="its tasks: regression_rotated"):
        bench.expand(bench.load_profile(tiny_profile(tmp_path)), tasks=["burgers_1d"])
    with pytest.raises(bench.UsageError, match="they have: kan_multilevel, mlp_small"):
        bench.expand(bench.load_profile(tiny_profile(tmp_path)), baselines=["mlp_large"])


def test_parse_sets_accumulates_and_is_shared_by_bench_and_run():
    assert bench.parse_sets(["a.b=1", "schedule=[2,0,3]", "name=x", "a.c=true"]) == {
        "a": {"b": 1, "c": True},
        "schedule": [2, 0, 3],
        "name": "x",
    }
    parser = bench._parser_bench()
    args = parser.parse_args(["--set", "a.b=1", "c=2", "--set", "a.d=[1]", "--set", "c=3"])
    assert bench.parse_sets(args.set) == {"a": {"b": 1, "d": [1]}, "c": 3}
    assert bench.parse_sets([]) == {}
    with pytest.raises(bench.UsageError, match="a is already a value"):
        bench.parse_sets(["a=1", "a.b=2"])
    with pytest.raises(bench.UsageError, match="already has keys"):
        bench.parse_sets(["a.b=1", "a=2"])
    with pytest.raises(bench.UsageError, match="key=value"):
        bench.parse_sets(["a..b=1"])
    assert bench.scale_schedule([32, 16, 8, 4], 0.1) == [3, 2, 1, 1]
    assert bench.scale_schedule([0, 0, 16], 0.01) == [0, 0, 1]


def test_run_command_writes_exactly_that_record(tmp_path):
    out = tmp_path / "one.json"
    code = bench.run_main(
        ["--task", "regression_rotated", "--baseline", "kan_multilevel", "--seed", "7",
         "--set", "task_options.size=tiny", "schedule=[2,1]",
         "--set", "optimizer_options.max_iter=2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    record = read_record(out)
    assert (
        record["status"] == "ok" and record["seed"] == 7 and record["config"]["schedule"] == [2, 1]
    )
    assert record["config"]["optimizer_options"]["max_iter"] == 2
    assert record["config_hash"] == config_hash(record["config"])
    for key in ("git_commit", "environment", "params", "params_per_level", "steps", "work",
                "work_unit", "work_macs", "wall_clock", "final_metrics", "history",
                "refinements", "device", "variant", "weights_sha256"):  # fmt: skip
        assert key in record
    assert len(record["refinements"]) == 1 and record["steps"] == 3
    assert record["weights_sha256"] == records.sha256_file(out.with_suffix(".pt"))
    weights = torch.load(out.with_suffix(".pt"), weights_only=False)
    assert sorted(weights["levels"]) == [0, 1]


def test_record_identity_rules(tmp_path, capsys, fail_lr):
    """ok/diverged final, failed retried, another config vs ok refused unless --force, a
    failed result never replaces an ok one."""
    results = tmp_path / "results"
    profile = tiny_profile(
        tmp_path,
        baselines=["kan_multilevel", "mlp_small", "mlp_large"],
        extra={"baseline_overrides": {"mlp_small": {"lr": FAIL_LR}, "mlp_large": {"lr": 1e200}}},
    )
    args = ["--profile", profile, "--results", str(results), "--no-render"]
    folder = results / "tiny"
    ok_path = record_path(folder, "regression_rotated", "kan_multilevel", 1)
    failed_path = record_path(folder, "regression_rotated", "mlp_small", 1)
    assert bench.bench_main(args) == 1
    ok = read_record(ok_path)
    assert ok["status"] == "ok" and ok["profile"] == "tiny"
    assert read_record(failed_path)["status"] == "failed"
    assert read_record(record_path(folder, "regression_rotated", "mlp_large", 1))["status"] == (
        "diverged"
    )
    capsys.readouterr()
    # ok and diverged are final; failed is retried (and fails again)
    assert bench.bench_main(args) == 1
    assert "2 already recorded, 1 to run (1 retry failed)" in capsys.readouterr().out
    assert bench.bench_main([*args, "--no-retry-failed"]) == 0
    assert "3 already recorded, 0 to run" in capsys.readouterr().out
    # another config than an ok record: refused before any run, nothing touched
    before = ok_path.stat().st_mtime_ns
    assert bench.bench_main([*args, "--set", "optimizer_options.max_iter=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 run(s) have an ok record of another config")
    assert "regression_rotated/kan_multilevel/seed1" in err and "--force" in err
    assert ok_path.stat().st_mtime_ns == before
    # --force replaces it
    forced = [*args, "--baselines", "kan_multilevel", "--force"]
    assert bench.bench_main([*forced, "--set", "optimizer_options.max_iter=3"]) == 0
    new = read_record(ok_path)
    assert new["status"] == "ok" and new["config"]["optimizer_options"]["max_iter"] == 3
    assert new["config_hash"] == config_hash(new["config"]) != ok["config_hash"]
    capsys.readouterr()
    # a failed rerun (forced, failing config) is written beside the ok record
    assert bench.bench_main([*forced, "--set", f"lr={FAIL_LR}"]) == 1
    out = capsys.readouterr().out
    assert read_record(ok_path)["config_hash"] == new["config_hash"]
    beside = records.failed_path(ok_path)
    assert beside.name == "seed1.failed.json"
    assert read_record(beside)["status"] == "failed"
    assert "the ok record beside it was kept" in out
    assert [r.seed for r in LB.load_records(folder)["regression_rotated"]["kan_multilevel"]] == [1]


def test_write_record_unit_rules(tmp_path):
    path = tmp_path / "t" / "b" / "seed1.json"
    head = {"task": "t", "baseline": "b", "seed": 1}
    records.write_record(path, {**head, "status": "ok"}, weights={"w": torch.ones(2)})
    digest = read_record(path)["weights_sha256"]
    assert digest == records.sha256_file(path.with_suffix(".pt"))
    assert records.write_record(path, {**head, "status": "failed"}) == records.failed_path(path)
    assert read_record(path)["status"] == "ok" and read_record(path)["weights_sha256"] == digest
    # a diverged result replaces it (and removes the stale failure beside it)
    records.write_record(path, {**head, "status": "diverged"}, weights={"w": torch.zeros(2)})
    assert read_record(path)["status"] == "diverged"
    assert not records.failed_path(path).exists()
    # a failed one replaces a diverged one, without weights: the stale .pt goes
    records.write_record(path, {**head, "status": "failed"})
    assert read_record(path)["status"] == "failed" and not path.with_suffix(".pt").exists()


def test_records_per_profile_and_variants(tmp_path, capsys, monkeypatch):
    from bench_mlkan.reporting import figures, spectra

    monkeypatch.setattr(spectra, "CONDITION_NS", (4, 8, 16))  # small plots: this tests folders
    monkeypatch.setattr(figures, "SPECTRUM_GRID", (16, 6))
    results = tmp_path / "results"
    variant = {
        "task": "regression_rotated", "seeds": [1], "baselines": ["mlp_small"],
        "overrides": {**TINY, "lr": 0.02}, "schedule_scale": 0.03, "variant": "lr02",
    }  # fmt: skip
    pa = tiny_profile(tmp_path, baselines=["mlp_small"], name="pa", more=[variant])
    pb = tiny_profile(tmp_path, baselines=["mlp_small"], name="pb")
    out = tmp_path / "boards"
    assert bench.bench_main(["--profile", pa, "--results", str(results), "--leaderboards",
                             str(out)]) == 0  # fmt: skip
    plain = record_path(results / "pa", "regression_rotated", "mlp_small", 1)
    var = record_path(results / "pa", "regression_rotated", "mlp_small@lr02", 1)
    assert read_record(plain)["variant"] is None
    assert read_record(var)["variant"] == "lr02" and read_record(var)["config"]["lr"] == 0.02
    assert read_record(var)["baseline"] == "mlp_small"
    stamp = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (results / "pa").rglob("*.*")}
    assert bench.bench_main(["--profile", pb, "--results", str(results), "--no-render"]) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in stamp} == stamp
    assert not set((results / "pa").rglob("*.*")) - set(stamp)
    assert read_record(record_path(results / "pb", "regression_rotated", "mlp_small", 1))
    rows = LB.load_records(results / "pa")["regression_rotated"]
    assert sorted(rows) == ["mlp_small", "mlp_small@lr02"]
    assert "`mlp_small@lr02`" in (out / "pa" / "regression_rotated.md").read_text()
    assert "## Profile `pb`" not in (out / "README.md").read_text()
    LB.render_all(results, out, plots=False)
    index = (out / "README.md").read_text()
    assert "## Profile `pa`" in index and "## Profile `pb`" in index
    assert "(pa/regression_rotated.md)" in index and "(pb/regression_rotated.md)" in index


def test_progress_lines_carry_elapsed_and_eta(tmp_path, capsys):
    results = tmp_path / "results"
    profile = tiny_profile(tmp_path)
    assert bench.bench_main(["--profile", profile, "--results", str(results), "--no-render"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    assert len(lines) == 4  # a start and a result line per run
    pattern = re.compile(r"^\[\d/2 elapsed (<1s|\d+s|\d+m\d\ds) ETA (<1s|\d+s|\d+m\d\ds|\?)\] ")
    assert all(pattern.match(ln) for ln in lines), lines


def test_eta_from_finished_runs(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(eta.time, "perf_counter", lambda: clock[0])
    p = eta.Progress(["a", "b", "c"], {"a": 10.0, "b": 20.0, "c": None}, workers=2)
    assert p.eta() is None  # c has no estimate and nothing finished yet
    p.start("a")
    clock[0] = 5.0
    p.finish("a")  # took half its estimate: b's estimate scales to 10; c counts a's 5
    assert p.eta() == pytest.approx(10.0)  # max(15 / 2 workers, longest 10)
    p.start("b")
    clock[0] = 9.0
    assert p.eta() == pytest.approx(6.0)  # b: 10 - 4 running; c: 5 -> max(11/2, 6)
    assert p.prefix() == "[1/3 elapsed 9s ETA 6s]"
    assert eta.makespan([5, 3, 3, 1], 2) == 6
    # per row: a row's own finished runs set its scale; other rows keep the global one
    q = eta.Progress(["t/x/seed1", "t/x/seed2", "t/y/seed1", "t/z/seed1"],
                     {"t/x/seed1": 1.0, "t/x/seed2": 1.0, "t/y/seed1": 10.0,
                      "t/z/seed1": 4.0}, workers=1)  # fmt: skip
    for label, took in (("t/x/seed1", 30.0), ("t/y/seed1", 5.0)):
        q.start(label)
        clock[0] += took
        q.finish(label)
    # x/seed2: 1 x 30 (its row ran 30x its estimate); z: 4 x (35 / 11) (no run of its row)
    assert q.eta() == pytest.approx(30.0 + 4.0 * 35.0 / 11.0)
    assert eta.fmt_duration(3725) == "1h02m" and eta.fmt_duration(245) == "4m05s"


def test_estimate_from_records_scales_by_steps_and_points(tmp_path):
    from bench_mlkan.baselines import baseline_config

    base = baseline_config("mlp_small", "regression_rotated", 1, TINY)
    ref = {**base.to_dict(), "schedule": [10]}
    refs = {("regression_rotated", "mlp_small"): [(tmp_path, {"task": "regression_rotated",
            "config": ref, "wall_clock": 8.0})]}  # fmt: skip
    small_ref = {**ref, "task_options": {"size": "small"}, "schedule": [5]}
    spec = bench.RunSpec("regression_rotated", "mlp_small", 1, small_ref)
    from bench_mlkan.engine import count_points
    from bench_mlkan.tasks import TASKS

    p_tiny = count_points(TASKS["regression_rotated"](size="tiny").train_batch())
    p_small = count_points(TASKS["regression_rotated"](size="small").train_batch())
    est = eta.estimate_from_records(spec, refs, {})
    assert est is not None
    assert est.seconds == pytest.approx(8.0 / (10 * p_tiny) * 5 * p_small)
    assert "scaled x" in est.source
    # the dry run uses only records with as many points (else it calibrates)
    assert eta.estimate_from_records(spec, refs, {}, same_points=True) is None
    tiny = bench.RunSpec("regression_rotated", "mlp_small", 1, {**ref, "schedule": [2]})
    est = eta.estimate_from_records(tiny, refs, {}, same_points=True)
    assert est is not None and est.seconds == pytest.approx(8.0 * 2 / 10)


def test_dry_run_estimates_say_where_they_come_from(tmp_path, capsys):
    results = tmp_path / "results"
    profile = tiny_profile(tmp_path)
    assert bench.bench_main(["--profile", profile, "--results", str(results), "--no-render"]) == 0
    walls = {
        p.parent.name: read_record(p)["wall_clock"] for p in records.record_files(results / "tiny")
    }
    capsys.readouterr()
    assert bench.bench_main(["--profile", profile, "--results", str(results), "--dry-run",
                             "--force"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    for name, wall in walls.items():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name))
        assert eta.fmt_duration(wall) in line and "records in" in line and "(n=1)" in line
    assert "total:" in out
    # poisson_2d has no record anywhere: a calibration in this process
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"experiments": [{"task": "poisson_2d", "seeds": [1, 2],
        "baselines": ["mlp_medium"], "overrides": {"task_options": {"size": "tiny"}},
        "schedule_scale": 0.01}]}))  # fmt: skip
    assert bench.bench_main(["--profile", str(cal), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "calibration: " in out and "poisson_2d: 2 run(s)" in out
    assert not (results / "cal").exists(), "a dry run writes nothing"


def test_compare_with_reference(tmp_path):
    def put(folder, baseline, seed, value, status="ok"):
        rec = {"task": "regression_rotated", "baseline": baseline, "seed": seed,
               "status": status, "final_metrics": {"train_mse": value},
               "task_description": {"kind": "regression"}}  # fmt: skip
        records.write_record(record_path(folder, "regression_rotated", baseline, seed), rec)

    ours, ref = tmp_path / "ours", tmp_path / "ref"
    put(ours, "a", 1, 1.0e-3)
    put(ours, "a", 2, 3.0e-3)
    put(ref, "a", 1, 1.1e-3)
    put(ref, "a", 2, 2.9e-3)  # means 2.0e-3 vs 2.0e-3: same
    put(ours, "b", 1, 2.0e-3)
    put(ref, "b", 1, 1.0e-3)  # ratio 2: differ
    put(ours, "c", 1, 1.0e-3)  # no reference
    specs = [bench.RunSpec("regression_rotated", b, s) for b, s in
             (("a", 1), ("a", 2), ("b", 1), ("c", 1))]  # fmt: skip
    lines = bench.compare_with_reference(specs, ours, ref, tol=0.1)
    assert "train MSE 2.000e-03 vs 2.000e-03  ratio 1  same (seeds 2)" in lines[0]
    assert "ratio 2  differ (seeds 1)" in lines[1]
    assert lines[2].endswith("no reference")
    assert lines[3].strip() == "1 same, 1 differ, 1 no reference"


def test_default_folders_are_git_ignored():
    assert records.DEFAULT_RESULTS == records.REPO_ROOT / "runs" / "results"
    assert records.DEFAULT_LEADERBOARDS == records.REPO_ROOT / "runs" / "leaderboards"
    probe = ["runs/results/quick/t/b/seed1.json", "leaderboards/results/quick/.lock",
             "leaderboards/results/quick/t/b/.seed1.pt.x.tmp"]  # fmt: skip
    out = subprocess.run(
        ["git", "check-ignore", *probe], cwd=records.REPO_ROOT, capture_output=True, text=True
    )
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.stdout.split() == probe


def test_leaderboard_cli_renders_every_shipped_profile(tmp_path):
    assert LB.leaderboard_main(["--out", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / "quick" / "regression_rotated.md").exists()
    assert "## Profile `quick`" in (tmp_path / "README.md").read_text()
    assert LB.default_out_root(records.SHIPPED_RESULTS) == records.SHIPPED_LEADERBOARDS.resolve()
    assert LB.default_out_root(records.DEFAULT_RESULTS) == records.DEFAULT_LEADERBOARDS.resolve()


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
    paths = sorted(results.glob("tiny/*/*/seed*.json"))
    assert len(paths) == 4 and all(read_record(p)["status"] == "ok" for p in paths)
