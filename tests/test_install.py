"""A non-editable install of the package (a wheel, installed into a folder of its own) trains,
exports and verifies without the source checkout: templates, configs, sweep specs and
testbench sources ship as package data, and nothing reaches back into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel and installed (no dependencies: they are this venv's) into
    site/; the environment that imports it from there, in a folder outside the checkout."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"                 # the tracked files only (no build/ leftovers, no local files)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheel = _run(["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(base / "dist"), str(src)],
                 base, os.environ.copy())
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    [whl] = (base / "dist").glob("hrn_hw-*.whl")
    site = base / "site"
    inst = _run(["-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)], base, os.environ.copy())
    assert inst.returncode == 0, inst.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    work = base / "work"
    work.mkdir()
    return site, env, work


def test_wheel_install_trains_exports_and_verifies(installed):
    site, env, work = installed
    where = _run(["-c", "import hrn_hw; print(hrn_hw.__file__)"], work, env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    cli = ["-m", "hrn_hw.cli"]
    steps = [["train", "--scenario", "pairwise-mnist", "--limit", "100", "--epochs", "1", "--out", "m.pt"],
             ["export", "m.pt", "-o", "out", "--golden", "4", "--eval-limit", "50", "--calib", "32"],
             ["verify", "out", "--against", "csim"]]
    for step in steps:
        res = _run(cli + step, work, env, timeout=900)
        assert res.returncode == 0, f"{step[0]}: {res.stderr[-2000:]}"
    assert "0 mismatches" in res.stdout
    for shipped in ("hls/templates/hrn_unit.h", "rtl/native_tb/hrn_top_tb.cpp", "reference/native_nodes.cpp",
                    "configs/pairwise-mnist.yaml", "sweeps/methods-pairwise-mnist.yaml"):
        assert (site / "hrn_hw" / shipped).is_file(), shipped
    assert (work / "out" / "rtl" / "hrn_top.v").is_file() and (work / "out" / "hls" / "firmware").is_dir()
