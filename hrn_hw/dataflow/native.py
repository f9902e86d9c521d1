"""Compiled twin of the event engine (`engine.cpp`): build, load and run.

`engine.py` is the specification; `engine.cpp` follows its rules step by step and gives the
same integers (tests compare every output on random problems), tens of times faster. The
library is built with g++ (or $CXX) on first use into $HRN_DATAFLOW_DIR, by default
`<sys.prefix>/hrn-dataflow`; its name holds a digest of the source and flags, so a stale build is
never loaded, and it is compiled under a temporary name and renamed, so processes building at
once never load a half-written file. HRN_DATAFLOW_NATIVE=0 in the environment runs the Python
engine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from hrn_hw.dataflow import engine
from hrn_hw.errors import HrnError

SOURCE = Path(__file__).with_name("engine.cpp")
ENV_SWITCH = "HRN_DATAFLOW_NATIVE"   # "0": the Python engine runs
ENV_DIR = "HRN_DATAFLOW_DIR"         # where builds live (default: <sys.prefix>/hrn-dataflow)
ENV_CXX = "CXX"                      # the compiler (default: g++)
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC")
SYMBOL = "hrn_dataflow_simulate"
INPUTS = ("pool_servers", "pool_capacity", "chain_start", "job_pool", "job_delay", "job_duration", "job_lead",
          "sample_class", "arrival")
OK, DEADLOCK = 0, 1
FAILURES = {2: "more than 2**31 - 1 samples, jobs or servers", 3: "out of memory",
            4: "the trace buffer is too small", 5: "an unexpected C++ exception"}

_loaded: dict[str, object] = {}            # library path -> its loaded entry point
_failed: dict[tuple[str, str], str] = {}   # (library path, compiler) -> why it did not build or load
_warned = False


def build_dir() -> Path:
    """Directory of the builds: $HRN_DATAFLOW_DIR, else `hrn-dataflow` in the interpreter's prefix."""
    return Path(os.environ.get(ENV_DIR) or Path(sys.prefix) / "hrn-dataflow")


def compiler() -> list[str]:
    """The compiler's command line: $CXX split like a shell would, else g++."""
    return shlex.split(os.environ.get(ENV_CXX) or "g++")


def library_path() -> Path:
    """The build: <build_dir>/hrn_dataflow_<digest of engine.cpp and the flags>.so."""
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(" ".join(FLAGS).encode())
    return build_dir() / f"hrn_dataflow_{key.hexdigest()[:16]}.so"


def switched_off() -> bool:
    """HRN_DATAFLOW_NATIVE=0 in the environment: the Python engine runs."""
    return os.environ.get(ENV_SWITCH, "1") == "0"


def _compile_error(output: str) -> str:
    """The first line of the compiler's output that names an error, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[0 if errors else -1]


def build(force: bool = False) -> Path:
    """Compile engine.cpp into library_path() unless it is there (or `force`); returns the path."""
    path = library_path()
    if path.is_file() and not force:
        return path
    cxx = compiler()
    if not cxx or shutil.which(cxx[0]) is None:
        raise HrnError(f"cannot build the compiled event engine: compiler {' '.join(cxx) or '(empty $CXX)'!r} "
                       "not found (install g++ or set CXX)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise HrnError(f"cannot build the compiled event engine in {path.parent}: {exc.strerror or exc} "
                       f"(set {ENV_DIR} to a writable directory)") from None
    try:
        done = subprocess.run([*cxx, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            raise HrnError(f"cannot build the compiled event engine: {_compile_error(done.stderr + done.stdout)}")
        os.replace(tmp, path)             # atomic: other processes see no file or the whole one
    except OSError as exc:
        raise HrnError(f"cannot build the compiled event engine: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _bind(lib: ctypes.CDLL):
    """The entry point with its argument types."""
    fn = getattr(lib, SYMBOL)
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = [i64, ptr, i64, ptr, i64, ptr, i64, ptr, ptr, ptr, ptr, i64, ptr, ptr, i64, i64,
                   ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, ptr]
    fn.restype = ctypes.c_int
    return fn


def _entry():
    """The compiled entry point, built and loaded on first use; HrnError (one line) says why not."""
    if switched_off():
        raise HrnError(f"the compiled event engine is switched off ({ENV_SWITCH}=0)")
    path = str(library_path())
    if path in _loaded:
        return _loaded[path]
    key = (path, " ".join(compiler()))
    if key in _failed:
        raise HrnError(_failed[key])
    try:
        build()
        fn = _bind(ctypes.CDLL(path))
    except HrnError as exc:
        _failed[key] = str(exc)
        raise
    except (OSError, AttributeError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        _failed[key] = (f"the compiled event engine {path} does not load ({lines[-1]}): "
                        "rebuild it with build(force=True)")
        raise HrnError(_failed[key]) from None
    _loaded[path] = fn
    return fn


def problem_reason() -> str | None:
    """Why the compiled engine is not available (building it first where absent), or None."""
    try:
        _entry()
    except HrnError as exc:
        return str(exc)
    return None


def available() -> bool:
    """The compiled engine builds and loads here (and is not switched off)."""
    return problem_reason() is None


def _trace_rows(pb: engine.Problem) -> int:
    """Rows of the trace: every job of the traced samples."""
    traced = pb.sample_class[:min(pb.trace_samples, pb.num_samples)]
    return int(np.diff(pb.chain_start)[traced].sum())


def _deadlock(pb: engine.Problem, info: np.ndarray, stuck: np.ndarray) -> engine.DeadlockError:
    """The Python engine's DeadlockError for the compiled engine's final state."""
    return engine.deadlock_error(pb.num_samples, int(info[2]), int(info[1]), np.flatnonzero(stuck).tolist())


PROGRESS_SAMPLES = 200_000     # runs at least this long show a progress bar (when asked for)


def _call_with_progress(call, total: int, counter: np.ndarray, show: bool) -> int:
    """Run `call()` (a ctypes call, which releases the GIL) in a thread while a tqdm bar on stderr
    follows `counter[0]`, the finished samples the engine publishes."""
    if not show or total < PROGRESS_SAMPLES:
        return call()
    import threading

    from tqdm import tqdm

    result = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    with tqdm(total=total, desc="simulating", unit=" samples", unit_scale=True, file=sys.stderr, leave=False) as bar:
        while worker.is_alive():
            worker.join(0.2)
            bar.update(int(counter[0]) - bar.n)
    return result[0]


def simulate(problem: engine.Problem, progress: bool = False) -> engine.Outcome:
    """Run `problem` with the compiled engine (HrnError where it is not available); `progress`:
    a bar on stderr for long runs."""
    fn = _entry()
    problem.check()
    arrays = {name: np.ascontiguousarray(getattr(problem, name), dtype=np.int64) for name in INPUTS}
    N, S, P = problem.num_samples, problem.num_servers, problem.num_pools
    outcome = engine.Outcome(np.zeros(N, np.int64), np.zeros(N, np.int64), np.zeros(S, np.int64),
                             np.zeros(S, np.int64), np.zeros(P, np.int64), 0,
                             np.zeros((_trace_rows(problem), 6), np.int64))
    info, stuck = np.zeros(3, np.int64), np.zeros(P, np.int64)
    a = {name: arr.ctypes.data for name, arr in arrays.items()}
    def call() -> int:
        return fn(S, a["pool_servers"], P, a["pool_capacity"], len(arrays["chain_start"]) - 1, a["chain_start"],
                  len(arrays["job_pool"]), a["job_pool"], a["job_delay"], a["job_duration"], a["job_lead"],
                  N, a["sample_class"], a["arrival"], int(problem.in_flight), int(problem.trace_samples),
                  outcome.admit.ctypes.data, outcome.done.ctypes.data, outcome.busy.ctypes.data,
                  outcome.blocked.ctypes.data, outcome.max_queue.ctypes.data, outcome.trace.ctypes.data,
                  len(outcome.trace), info.ctypes.data, stuck.ctypes.data)

    rc = _call_with_progress(call, N, info[2:], progress)
    if rc == DEADLOCK:
        raise _deadlock(problem, info, stuck)
    if rc != OK:
        raise HrnError(f"the compiled event engine failed (code {rc}: {FAILURES.get(rc, 'unknown')})")
    outcome.inflight_area = int(info[0])
    return outcome


def _warn_once(reason: str) -> None:
    """Warn (once per process) that the Python engine runs instead of the compiled one."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"{reason}; the Python event engine runs (same results, slower)", RuntimeWarning,
                      stacklevel=3)


def run(problem: engine.Problem, prefer: str = "auto", progress: bool = False) -> engine.Outcome:
    """Simulate `problem`. prefer: "auto" (the compiled engine where it builds and loads, else the
    Python one with one warning per process), "native" (compiled or HrnError), "python".
    progress: a bar on stderr while a long compiled run goes."""
    if prefer not in ("auto", "native", "python"):
        raise HrnError(f"unknown engine {prefer!r}: choose auto, native or python")
    if prefer == "python" or (prefer == "auto" and switched_off()):
        return engine.simulate(problem)
    if prefer == "auto":
        reason = problem_reason()
        if reason is not None:
            _warn_once(reason)
            return engine.simulate(problem)
    return simulate(problem, progress)
