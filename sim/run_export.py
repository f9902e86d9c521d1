"""`make sim` on an export: the top level on Verilator (cocotb), bit for bit against the golden
vectors, cycles per sample against the cycle model; prints parity and cycles (min / median /
max) and adds the run to sim/results.json.

    python sim/run_export.py                  # exports the bundled demo model (sim/demo_model.pt) first
    python sim/run_export.py --export OUT -n 200 [--waves]

The bundled model: `hrn-hw train --scenario pairwise-mnist --limit 1000 --epochs 1 --seed 0`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SIM = Path(__file__).resolve().parent
sys.path.insert(0, str(SIM.parent))
sys.path.insert(0, str(SIM))

from simlib import BUILD_DIR  # noqa: E402

DEMO_MODEL = SIM / "demo_model.pt"
DEMO_EXPORT = BUILD_DIR / "demo_export"


def demo_export() -> Path:
    """The bundled demo model's export (made once, cached under sim/build/)."""
    from hrn_hw.export.pipeline import export

    if not (DEMO_EXPORT / "rtl" / "hrn_top.v").is_file() or \
            DEMO_EXPORT.stat().st_mtime < DEMO_MODEL.stat().st_mtime:
        export(DEMO_MODEL, DEMO_EXPORT, force=True, golden_per_task=10, eval_limit=500, calib=128)
    return DEMO_EXPORT


def main(argv=None) -> int:
    from hrn_hw.errors import HrnError
    from hrn_hw.verify import verify_rtl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", help="export directory (default: the bundled demo model's)")
    ap.add_argument("-n", type=int, help="golden samples to simulate (default: all)")
    ap.add_argument("--waves", action="store_true", help="dump waves (FST) into OUT/rtl/build/")
    ap.add_argument("--jobs", type=int, help="simulations at once (default: one per CPU core; 1 with --waves)")
    ap.add_argument("--sim", choices=("native", "cocotb"),
                    help="testbench: native C++ (hrn_hw/rtl/native_sim.py) or cocotb (sim/test_top.py); "
                         "default native, cocotb with --waves")
    args = ap.parse_args(argv)
    if args.waves:
        os.environ["WAVES"] = "1"
    try:
        out = Path(args.export) if args.export else demo_export()
        r = verify_rtl(out, args.n, args.jobs, args.sim or ("cocotb" if args.waves else "native"))
    except HrnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = r["cycles"]
    print(f"{out}: {r['compared']} samples, {r['mismatches']} mismatches (embedding, route, logits bit for bit); "
          f"cycles per sample min/median/max {c['min']}/{c['median']:g}/{c['max']}, cycle model differs on "
          f"{r['cycle_model_mismatches']}; {r['samples_per_second']:.1f} samples/s on Verilator")
    results = SIM / "results.json"
    data = json.loads(results.read_text()) if results.is_file() else {}
    data["top (export)"] = {"export": str(out), **{k: r[k] for k in ("compared", "mismatches", "per_output", "cycles",
                                                                    "cycle_model_mismatches", "samples_per_second",
                                                                    "knobs", "sim")}}
    results.write_text(json.dumps(data, indent=1) + "\n")
    if args.waves:
        print(f"waves: {out / 'rtl' / 'build' / 'dump.fst'}")
    return 1 if r["mismatches"] or r["cycle_model_mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
