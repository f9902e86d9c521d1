"""Shared helpers of the sim/ testbenches. The Verilator + cocotb machinery lives in the
package (`hrn_hw.rtl.cocotb_run`: Verilog generation, Verilator build and cocotb run on the
pytest side, clock/reset/stream helpers on the cocotb side) and is re-exported here; importing
this module points its builds at sim/build/ ($HRN_SIM_BUILD unless already set) and puts sim/
on sys.path, so cocotb finds the test modules of sim/. What needs the source checkout stays
here: `small_export`, the fixture model.

Each `sim/test_<dut>.py` holds the cocotb tests of one DUT and a pytest function that calls
`run_dut`; `tests/test_rtl_blocks.py` calls those functions so `make test` runs them too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIM_DIR = Path(__file__).resolve().parent
ROOT = SIM_DIR.parent
os.environ.setdefault("HRN_SIM_BUILD", str(SIM_DIR / "build"))     # before the package reads it
BUILD_DIR = Path(os.environ["HRN_SIM_BUILD"])
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from hrn_hw.rtl.cocotb_run import (  # noqa: E402
    OPT, PARAMS_ENV, PERIOD_NS, RUNTIME_OBJS, VERILATOR_ARGS, _keep_runtime, _share_runtime, _verilator_on_path,
    _verilator_runner, build_lock, pack_beats, params, record, run_dut, start, stream_frame, to_signed, to_unsigned,
    unpack_beat, write_if_changed)

__all__ = ["SIM_DIR", "ROOT", "BUILD_DIR", "small_export", "OPT", "PARAMS_ENV", "PERIOD_NS", "RUNTIME_OBJS",
           "VERILATOR_ARGS", "_keep_runtime", "_share_runtime", "_verilator_on_path", "_verilator_runner",
           "build_lock", "pack_beats", "params", "record", "run_dut", "start", "stream_frame", "to_signed",
           "to_unsigned", "unpack_beat", "write_if_changed"]


def small_export() -> Path:
    """A small trained-and-exported Pairwise-MNIST model shared by the testbenches that need
    real data (hrn-hw train --limit 200 --epochs 1, then an export with 10 golden vectors per
    task and no RTL), built once under BUILD_DIR/_fixture/ (the model is its X.pt)."""
    import subprocess

    base = BUILD_DIR / "_fixture"
    out = base / "export"
    with build_lock(base):
        if all((out / f).is_file() for f in ("manifest.json", "weights.npz", "golden/vectors.npz")):
            return out
        ckpt = base / "X.pt"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if not ckpt.is_file():
            exe = Path(sys.executable).parent / "hrn-hw"
            subprocess.run([str(exe), "train", "--scenario", "pairwise-mnist", "--limit", "200", "--epochs", "1",
                            "--out", str(ckpt)], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        from hrn_hw.export.pipeline import export

        export(ckpt, out, force=True, golden_per_task=10, eval_limit=50, calib=64, quiet=True, rtl=False)
        return out
