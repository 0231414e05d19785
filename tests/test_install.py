"""A pip-installed copy: the wheel holds every package and data file, and a bench run from
it writes only under the current directory, never inside the installation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
#: what a wheel needs from the checkout (everything else - tests, leaderboards - stays out)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bench_mlkan", "tasks", "baselines")


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_pyproject_lists_every_package_licence_and_data():
    cfg = project()
    packages = set(cfg["tool"]["setuptools"]["packages"])
    on_disk = {"bench_mlkan", "bench_mlkan.tasks", "bench_mlkan.baselines"} | {
        f"bench_mlkan.{p.parent.name}" for p in (REPO / "bench_mlkan").glob("*/__init__.py")
    }
    assert packages == on_disk  # a new subpackage must be listed, or pip installs miss it
    meta = cfg["project"]
    assert meta["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert meta["authors"] and meta["urls"]["Paper"].startswith("https://arxiv.org/")
    assert (REPO / "bench_mlkan" / "py.typed").exists()
    data = cfg["tool"]["setuptools"]["package-data"]
    assert {"profiles/*.json", "py.typed", "paper_results.json"} <= set(data["bench_mlkan"])
    assert "*/*.json" in data["bench_mlkan.baselines"]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.slow  # builds a wheel, installs it, runs the smoke profile (~2 min on 2 cores)
def test_installed_copy_writes_only_where_the_user_is(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    py = sys.executable
    dist = tmp_path / "dist"
    subprocess.run(
        [py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("bench_mlkan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in (
        "bench_mlkan/py.typed",
        "bench_mlkan/paper_results.json",
        "bench_mlkan/profiles/smoke.json",
        "bench_mlkan/baselines/kan_multilevel/config.json",
        "bench_mlkan/baselines/kan_multilevel/search_space.json",
        "bench_mlkan/tasks/burgers.py",
        "bench_mlkan/tuning/cli.py",
    ):
        assert want in names, want
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    # a fresh environment: the wheel alone (no dependencies), the dependencies from this venv
    env_dir = tmp_path / "venv"
    subprocess.run([py, "-m", "venv", "--without-pip", env_dir], check=True)
    target_py = env_dir / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "--python", target_py, "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [target_py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "_bench_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [target_py, "-c", "import bench_mlkan; print(bench_mlkan.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(site), where  # the installed copy, not the checkout

    work = tmp_path / "work"
    work.mkdir()
    before = _snapshot(env_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_MLKAN_", "WANDB_"))}
    env.pop("PYTHONPATH", None)
    env["WANDB_MODE"] = "offline"
    out = subprocess.run(
        [env_dir / "bin" / "bench-mlkan", "bench", "--profile", "smoke", "--wandb",
         "--logger", "csv"],
        cwd=work, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert _snapshot(env_dir) == before  # nothing written inside the installation
    runs = work / "runs"
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
    assert sorted(p.name for p in runs.iterdir()) == ["leaderboards", "logs", "results", "wandb"]
    assert len(list((runs / "results" / "smoke").glob("*/*/seed*.json"))) == 6
    assert (runs / "leaderboards" / "smoke" / "README.md").exists()
    assert len(list((runs / "wandb").glob("offline-run-*"))) == 7  # 6 runs + the leaderboard
    assert len(list((runs / "logs" / "smoke").glob("*/*/seed*/metrics.csv"))) == 6
