"""`hrn-hw verify OUT --against csim|rtl`: replay the golden vectors and compare every output bit."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np

from hrn_hw.export import vectors
from hrn_hw.export.ir import ExportError, QuantModel
from hrn_hw.hls import csim

OUTPUTS = ("embedding", "routes", "logits")


def compare(expected: dict, got: dict) -> dict:
    """Bitwise comparison per sample; a sample mismatches when any of its outputs differs."""
    bad = {k: np.asarray(expected[k] != got[k]).reshape(len(expected[k]), -1).any(1) for k in OUTPUTS}
    any_bad = np.logical_or.reduce([bad[k] for k in OUTPUTS])
    return {"compared": int(len(any_bad)), "mismatches": int(any_bad.sum()),
            "per_output": {k: int(v.sum()) for k, v in bad.items()},
            "first_mismatches": np.nonzero(any_bad)[0][:10].tolist()}


def load_model(export_dir: Path) -> QuantModel:
    """The QuantModel of an export directory, with one-line errors for a missing, foreign or
    corrupt one."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise ExportError(f"{export_dir}: no such export directory")
    try:
        return QuantModel.load(export_dir)
    except zipfile.BadZipFile:
        raise ExportError(f"{export_dir / 'weights.npz'}: corrupt or truncated (not a zip archive)") from None


def _load_export(export_dir: Path, n: int | None):
    """QuantModel and golden vectors (the first n) of an export, with clear errors."""
    qm = load_model(export_dir)
    vec = vectors.load(export_dir)
    if n is not None:
        vec = {k: v[:n] for k, v in vec.items()}
    return qm, vec


def _finish(export_dir: Path, against: str, vec: dict, got: dict, seconds: float, **extra) -> dict:
    result = {"against": against, **compare(vec, got), "seconds": round(seconds, 3),
              "samples_per_second": round(len(vec["pixels"]) / max(seconds, 1e-9), 1), **extra}
    (export_dir / f"verify_{against}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def verify_csim(export_dir: str | Path, n: int | None = None) -> dict:
    """Build the export's C simulation, run it on the first n golden inputs, compare bit for bit."""
    export_dir = Path(export_dir)
    qm, vec = _load_export(export_dir, n)
    if not (export_dir / "hls" / "Makefile").is_file():
        raise ExportError(f"{export_dir}: no HLS project (hls/Makefile missing); export again")
    binary = csim.build(export_dir / "hls")
    t0 = time.perf_counter()
    out = csim.run(binary, vec["pixels"], vec["tasks"], qm.s, qm.d, qm.max_classes)
    return _finish(export_dir, "csim", vec, {"embedding": out.embedding, "routes": out.routes, "logits": out.logits},
                   time.perf_counter() - t0)


def verify_rtl(export_dir: str | Path, n: int | None = None, jobs: int | None = None, sim: str = "native") -> dict:
    """Simulate the export's RTL (OUT/rtl) on Verilator on the first n golden inputs, compare
    bit for bit, and compare each sample's cycles with the cycle model. `sim`: "native" (the
    C++ testbench, hrn_hw/rtl/native_sim.py) or "cocotb" (hrn_hw/rtl/cocotb_top.py). `jobs`
    simulations run at once on shares of the samples (default: one per CPU core; one when waves
    are dumped)."""
    from hrn_hw.dataflow.stream import stream_schedule
    from hrn_hw.rtl import rtlsim
    from hrn_hw.rtl.emit import read_knobs

    export_dir = Path(export_dir)
    qm, vec = _load_export(export_dir, n)
    if not (export_dir / "rtl" / "hrn_top.v").is_file():
        raise ExportError(f"{export_dir}: no RTL (rtl/hrn_top.v missing); export again")
    knobs = read_knobs(export_dir / "rtl")
    cases = rtlsim.golden_cases(qm, vec, knobs, schedule=stream_schedule)
    jobs = rtlsim.default_jobs() if jobs is None else jobs
    if knobs.in_flight >= 2 and sim != "native":
        raise ExportError("the pipelined top level (in_flight >= 2) runs on the native testbench only (--sim native)")
    out = rtlsim.simulate_export(export_dir, qm, cases, knobs, jobs=jobs, sim=sim)
    cycles = out["cycles"]
    stats = {"min": int(cycles.min()), "median": float(np.median(cycles)), "max": int(cycles.max())} if len(cycles) else {}
    mismatched = cycles != cases["model_cycles"]
    extra = {}
    if knobs.in_flight >= 2:       # one stream: every sample's start and end cycle, and the interval
        mismatched |= (out["start"] != cases["model_start"]) | (out["end"] != cases["model_end"])
        order = np.sort(out["end"])
        extra["stream"] = {"in_flight": knobs.in_flight, "replicas": dict(knobs.replicas),
                           "interval_mean": float(np.diff(order).mean()) if len(order) > 1 else 0.0,
                           "interval_median": float(np.median(np.diff(order))) if len(order) > 1 else 0.0}
    return _finish(export_dir, "rtl", vec, {"embedding": out["embedding"], "routes": out["route"],
                                             "logits": out["logits"]}, float(out["seconds"]),
                   cycles=stats, cycle_model_mismatches=int(mismatched.sum()), **extra,
                   knobs=knobs.to_dict(), jobs=jobs, sim=sim,
                   **({"build_seconds": round(float(out["build_seconds"]), 1)} if "build_seconds" in out else {}))
