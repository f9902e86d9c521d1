"""Export benchmark: Pairwise-MNIST paper-config model -> export -> C simulation parity.

Measures, in one run: export seconds at the defaults (512 calibration images, 200 golden
images per task, float-vs-fixed on the full test sets); an export whose golden vectors hold
every test image of every task (all 10,000 MNIST test images for Pairwise-MNIST); the C-sim
build seconds and images/s; golden == C-sim over all of them. Writes a JSON.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_export.py runs/paper/model.pt --out results/bench_export.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrn_hw.bench import machine_record  # noqa: E402
from hrn_hw.export.pipeline import export  # noqa: E402
from hrn_hw.hls import csim  # noqa: E402
from hrn_hw.verify import verify_csim  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--out", default="results/bench_export.json")
    ap.add_argument("--work", help="directory for the exports (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="hrn-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"model": args.model, **machine_record(ROOT)}

    t0 = time.perf_counter()
    s = export(args.model, work / "default", force=True)
    res["export_seconds_default"] = round(time.perf_counter() - t0, 2)
    res["tasks"] = s["tasks"]
    res["saturations"] = s["saturations"]
    res["worst_accuracy_drop_points"] = round(100 * max(t["float_accuracy"] - t["fixed_accuracy"] for t in s["tasks"]), 3)
    res["lowest_route_agreement"] = min(t["route_agreement"] for t in s["tasks"])

    t0 = time.perf_counter()
    full = export(args.model, work / "all", force=True, golden_per_task=10**6, quiet=True)
    res["export_seconds_all_golden"] = round(time.perf_counter() - t0, 2)
    res["golden_samples"] = full["golden_samples"]

    shutil.rmtree(work / "all" / "hls" / "build", ignore_errors=True)
    t0 = time.perf_counter()
    csim.build(work / "all" / "hls")
    res["csim_build_seconds"] = round(time.perf_counter() - t0, 2)
    v = verify_csim(work / "all")
    res["csim"] = v
    res["csim_images_per_second"] = v["samples_per_second"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("tasks", "csim")}, indent=1))
    print(f"golden == C-sim: {v['compared']} compared, {v['mismatches']} mismatches")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if v["mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
