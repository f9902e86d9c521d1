"""One sweep runner for the project's many independent runs, on Dask.

Design-space sweeps of `hrn-hw simulate` (architectures x knobs x mappings) and the
continual-learning benchmark's runs are lists of points, each a small picklable dict, that one
module-level function turns into a result. `run_sweep(fn, points)` runs them on a local Dask
cluster (one single-threaded worker process per core, started and closed inside the call) and
returns the results in the order of the points; `grid(**axes)` builds the points.

On a real cluster, start a scheduler and workers in the project's environment (the workers
import `fn`'s module, so they need the same `hrn_hw`), then pass the scheduler's address:

    dask scheduler                      # on one host: listens on tcp://host:8786
    dask worker tcp://host:8786         # on each compute host (one process per core by default:
                                        #   --nworkers N --nthreads 1 to choose)
    ... --scheduler tcp://host:8786     # the sweep: run_sweep(..., scheduler="tcp://host:8786")

The cluster is only borrowed: the sweep never closes it. A point whose worker dies (killed,
out of memory) is submitted once more by default (`retries`); on a borrowed cluster its
scheduler's own `distributed.scheduler.allowed-failures` retries come first. With
`keep_failures=True` a point that still fails yields a `Failed` result and the rest go on. `workers=0` (or a single point, when
no scheduler is named) runs the points in this process without Dask, one after another: for
debugging (breakpoints, plain tracebacks) and tiny sweeps.

Workers: Dask's worker processes are daemonic, so `fn` must not start process pools of its
own (multiprocessing refuses children of a daemonic process); the sweep is the parallelism.
Dask starts its workers with OMP_NUM_THREADS=1 (also MKL, OpenBLAS), so torch in a worker
runs single-threaded unless `fn` calls torch.set_num_threads itself. Workers are spawned, not
forked: a script that calls `run_sweep` needs the `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import itertools
import logging
import os
from asyncio import CancelledError
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from tqdm import tqdm

from hrn_hw.errors import HrnError
from hrn_hw.reference.native import error_line

CONNECT_TIMEOUT = "10s"      # how long to wait for a named scheduler before giving up
LABEL_CHARS = 160            # a failed point's description in the error is cut to this length


def grid(**axes: list) -> list[dict]:
    """The cartesian product of named axes (each a list), first axis slowest:
    grid(arch=["rtl", "fpga"], in_flight=[1, 2]) gives rtl/1, rtl/2, fpga/1, fpga/2 as dicts
    {"arch": ..., "in_flight": ...}."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


class LostWorker(RuntimeError):
    """A point's worker process died while running it (Dask's KilledWorker, in one line)."""


@dataclass(frozen=True)
class Failed:
    """What run_sweep(..., keep_failures=True) returns for a point that failed: its error in
    one line and the attempts it had (1 + the retries after lost workers)."""
    error: str
    attempts: int


def run_sweep(fn: Callable[[Any], Any], points: Iterable, *, scheduler: str | None = None,
              workers: int | None = None, progress: bool = True, desc: str = "sweep",
              retries: int = 1, keep_failures: bool = False, info: dict | None = None) -> list:
    """[fn(point) for point in points], run in parallel on Dask, in the order of `points`.

    scheduler: a running Dask scheduler's address ("tcp://host:8786"); None starts a
    LocalCluster of `workers` processes (default: one per point up to os.cpu_count()) for
    this call (a named scheduler's cluster has its own workers; only workers=0 counts there).
    workers=0, or a single point without a scheduler: in this process, serially.
    progress: a tqdm bar of completed points on stderr, labelled `desc`.
    retries: how often a point whose worker died (Dask's KilledWorker) is submitted again; an
    exception raised by `fn` is not retried (a run that raised would raise again).
    A point that fails (raises, or loses its worker once more than `retries`) fails the sweep
    with a one-line HrnError naming the point, and the points still pending are cancelled;
    with keep_failures=True its result is a `Failed` instead and the others carry on.
    info: a dict that receives "workers", the number of single-threaded slots the points ran on.
    """
    points = list(points)
    outcome = _Outcome(points, desc, keep_failures)
    if workers == 0 or (scheduler is None and len(points) <= 1):
        if info is not None:
            info["workers"] = 1
        with outcome.bar(progress):
            for i, point in enumerate(points):
                try:
                    outcome.done(i, fn(point))
                except (Exception, CancelledError) as exc:
                    outcome.failed(i, exc, 1)
        return outcome.results

    with ExitStack() as stack:
        client = _client(stack, scheduler, workers or min(len(points), os.cpu_count() or 1))
        if info is not None:
            info["workers"] = sum(client.nthreads().values())
        _run_on(client, fn, outcome, retries, progress)
    return outcome.results


def _run_on(client, fn: Callable, outcome: "_Outcome", retries: int, progress: bool) -> None:
    """Submit every point to `client` and collect them as they complete; a point whose worker
    died goes back to the cluster up to `retries` times."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    pending: dict[str, tuple[int, Any]] = {}     # future key -> (point index, future)
    attempts = [0] * len(outcome.points)

    def submit(i: int):
        attempts[i] += 1
        future = client.submit(fn, outcome.points[i], pure=False)
        pending[future.key] = (i, future)
        return future

    queue = as_completed([submit(i) for i in range(len(outcome.points))], loop=client.loop)
    try:
        with outcome.bar(progress):
            for future in queue:
                i, _ = pending.pop(future.key)
                try:
                    outcome.done(i, future.result())
                except KilledWorker:
                    if attempts[i] <= retries:
                        queue.add(submit(i))
                    else:
                        outcome.failed(i, LostWorker("its worker died"), attempts[i])
                except (Exception, CancelledError) as exc:
                    outcome.failed(i, exc, attempts[i])
    except BaseException:
        client.cancel([future for _, future in pending.values()])
        raise


class _Outcome:
    """The results by point index, the progress bar, and what a failure does."""

    def __init__(self, points: list, desc: str, keep_failures: bool):
        self.points, self.desc, self.keep = points, desc, keep_failures
        self.results: list = [None] * len(points)
        self._bar = None

    @contextmanager
    def bar(self, progress: bool):
        with tqdm(total=len(self.points), desc=self.desc, unit="point", leave=False,
                  disable=not progress) as self._bar:
            yield

    def done(self, i: int, value) -> None:
        self.results[i] = value
        self._bar.update()

    def failed(self, i: int, exc: BaseException, attempts: int) -> None:
        message = (f"{self.desc}: point {i + 1}/{len(self.points)} ({_label(self.points[i])}) failed"
                   f"{f' after {attempts} attempts' if attempts > 1 else ''}: {_describe(exc)}")
        if not self.keep:
            raise HrnError(message) from exc
        self.done(i, Failed(message, attempts))


def _client(stack: ExitStack, scheduler: str | None, workers: int):
    """A Dask client, closed by `stack`: on a new LocalCluster (closed by `stack` too), or
    connected to the scheduler at `scheduler`, whose cluster is left running. The LocalCluster's
    scheduler gives up on a task at its first lost worker (allowed-failures 0), so that
    run_sweep's `retries` alone count the attempts, and sends a worker one task at a time
    (worker-saturation 1.0), so that a dying worker takes no queued point with it."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is None:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.scheduler.worker-saturation": 1.0}):
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.CRITICAL))     # a failing point is reported once, as one line
        return stack.enter_context(Client(cluster, set_as_default=False))
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, ValueError) as exc:
        raise HrnError(f"--scheduler {scheduler}: no Dask scheduler there ({error_line(exc)})") from None
    return stack.enter_context(client)


def _label(point) -> str:
    """A point in one short line: key=value pairs for a dict, else its repr."""
    text = ", ".join(f"{k}={v!r}" for k, v in point.items()) if isinstance(point, dict) else repr(point)
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 3] + "..."


def _describe(exc: BaseException) -> str:
    """An exception's class and the last line of its message."""
    name, line = type(exc).__name__, error_line(exc)
    return name if line == name else f"{name}: {line}"


def read_yaml(path) -> dict:
    """A sweep file's YAML mapping, with one-line errors (training and simulator sweeps)."""
    import yaml
    from pathlib import Path

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise HrnError(f"{path}: no such sweep file") from None
    except (yaml.YAMLError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise HrnError(f"{path}: not a YAML sweep file ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise HrnError(f"{path}: a sweep file is a YAML mapping")
    return raw
