"""Tabulate the block testbenches' records (sim/build/*/records.json, and those of a sharded run) into sim/results.json and
print parity and cycles per DUT (`make sim` runs it after the testbenches)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SIM = Path(__file__).resolve().parent
sys.path.insert(0, str(SIM))

from simlib import BUILD_DIR  # noqa: E402


def main() -> int:
    rows = []
    for path in sorted([*BUILD_DIR.glob("*/records.json"), *BUILD_DIR.glob("*/shard*/records.json")]):
        rows += json.loads(path.read_text())
    if not rows:
        print("no testbench records under", BUILD_DIR)
        return 1
    out = {}
    for r in rows:
        d = out.setdefault(r["dut"], {"frames": 0, "bit_exact": 0, "cycles": {}})
        d["frames"] += 1
        d["bit_exact"] += int(r["bit_exact"])
        if r["cycles"] is not None:
            d["cycles"][r["case"]] = {"measured": r["cycles"], "model": r["model"]}
    (SIM / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'dut':<16} {'bit-exact':>11} {'cycles min/median/max':>24}  model == measured")
    for dut, d in out.items():
        cyc = sorted(c["measured"] for c in d["cycles"].values())
        ok = all(c["measured"] == c["model"] for c in d["cycles"].values())
        span = f"{cyc[0]}/{cyc[len(cyc) // 2]}/{cyc[-1]}" if cyc else "-"
        print(f"{dut:<16} {d['bit_exact']:>5}/{d['frames']:<5} {span:>24}  {'yes' if ok else 'NO'}")
    print(f"written {SIM / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
