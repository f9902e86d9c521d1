"""Build and run the g++ C simulation of a rendered HLS project."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrn_hw.errors import HrnError


class ToolError(HrnError):
    """A required external tool (g++, make) is missing or failed."""


@dataclass
class CsimOutputs:
    embedding: np.ndarray   # [N, s] raw integers
    routes: np.ndarray      # [N, d]
    logits: np.ndarray      # [N, max_classes] raw integers


def require_tool(name: str, env_var: str | None = None, *, purpose: str = "the C simulation needs it",
                 install: str = "apt-get install g++ make", error: type[ToolError] = ToolError) -> str:
    """Path of an external tool ($env_var, else `name`), or `error` (ToolError) saying what needs
    it and how to install it."""
    exe = os.environ.get(env_var, name) if env_var else name
    path = shutil.which(exe)
    if path is None:
        raise error(f"{exe} not found on PATH: {purpose} ({install})")
    return path


def build(hls_dir: Path, quiet: bool = True) -> Path:
    """`make csim` in the project (incremental); returns the simulator binary."""
    cxx = require_tool("g++", "CXX")
    require_tool("make")
    env = dict(os.environ, CXX=cxx)
    res = subprocess.run(["make", "-s", "-C", str(hls_dir), "csim"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
        raise ToolError(f"C simulation build failed in {hls_dir}:\n{tail}")
    return hls_dir / "build" / "csim"


def write_inputs(path: Path, pixels: np.ndarray, tasks: np.ndarray) -> None:
    """The simulator's input file: int32 N, int32 pixels per sample, then (int32 task, pixels)."""
    n = len(pixels)
    flat = pixels.reshape(n, -1)
    rec = np.zeros((n, 4 + flat.shape[1]), dtype=np.uint8)
    rec[:, :4] = np.asarray(tasks, dtype="<i4").reshape(n, 1).view(np.uint8)
    rec[:, 4:] = flat
    with open(path, "wb") as f:
        f.write(np.array([n, flat.shape[1]], dtype="<i4").tobytes())
        f.write(rec.tobytes())


def run(binary: Path, pixels: np.ndarray, tasks: np.ndarray, s: int, d: int, max_classes: int,
        jobs: int | None = None) -> CsimOutputs:
    """Run the simulator on uint8 pixels [N, C, H, W] with task ids [N], split over `jobs`
    processes (default: one per CPU core); samples are independent, so the split changes nothing."""
    n = len(pixels)
    jobs = max(1, min(jobs or os.cpu_count() or 1, max(1, n // 64)))
    bounds = np.linspace(0, n, jobs + 1).astype(int)
    width = s + d + max_classes
    with tempfile.TemporaryDirectory(prefix="hrn-csim-") as tmp:
        procs = []
        for i in range(jobs):
            fin, fout = Path(tmp) / f"in{i}.bin", Path(tmp) / f"out{i}.bin"
            lo, hi = bounds[i], bounds[i + 1]
            write_inputs(fin, pixels[lo:hi], tasks[lo:hi])
            procs.append((subprocess.Popen([str(binary), str(fin), str(fout)], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True), fout, hi - lo))
        parts = []
        for proc, fout, count in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise ToolError(f"C simulation failed (exit {proc.returncode}): {err.strip()[:300]}")
            raw = np.fromfile(fout, dtype="<i4").astype(np.int64)
            if raw.size != count * width:
                raise ToolError(f"C simulation wrote {raw.size} values, expected {count * width}")
            parts.append(raw.reshape(count, width))
    raw = np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.int64)
    return CsimOutputs(raw[:, :s], raw[:, s:s + d], raw[:, s + d:])
