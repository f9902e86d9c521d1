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

The cluster is only borrowed: the sweep never closes it. `workers=0` (or a single point, when
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
from contextlib import ExitStack
from functools import partial
from typing import Any, Callable, Iterable

from tqdm import tqdm

from hrn_hw.errors import HrnError
from reference.native import error_line

CONNECT_TIMEOUT = "10s"      # how long to wait for a named scheduler before giving up
LABEL_CHARS = 160            # a failed point's description in the error is cut to this length


def grid(**axes: list) -> list[dict]:
    """The cartesian product of named axes (each a list), first axis slowest:
    grid(arch=["rtl", "fpga"], in_flight=[1, 2]) gives rtl/1, rtl/2, fpga/1, fpga/2 as dicts
    {"arch": ..., "in_flight": ...}."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def run_sweep(fn: Callable[[Any], Any], points: Iterable, *, scheduler: str | None = None,
              workers: int | None = None, progress: bool = True, desc: str = "sweep") -> list:
    """[fn(point) for point in points], run in parallel on Dask, in the order of `points`.

    scheduler: a running Dask scheduler's address ("tcp://host:8786"); None starts a
    LocalCluster of `workers` processes (default: one per point up to os.cpu_count()) for
    this call (a named scheduler's cluster has its own workers; only workers=0 counts there).
    workers=0, or a single point without a scheduler: in this process, serially.
    progress: a tqdm bar of completed points on stderr, labelled `desc`.
    A point that raises fails the sweep with a one-line HrnError naming the point; the
    points still pending are cancelled.
    """
    points = list(points)
    if workers == 0 or (scheduler is None and len(points) <= 1):
        calls = ((i, partial(fn, point)) for i, point in enumerate(points))
        return _collect(points, calls, progress, desc)
    from distributed import as_completed

    with ExitStack() as stack:
        client = _client(stack, scheduler, workers or min(len(points), os.cpu_count() or 1))
        futures = [client.submit(fn, point, pure=False) for point in points]
        index = {future.key: i for i, future in enumerate(futures)}
        calls = ((index[f.key], f.result) for f in as_completed(futures, loop=client.loop))
        try:
            return _collect(points, calls, progress, desc)
        except BaseException:
            client.cancel(futures)
            raise


def _client(stack: ExitStack, scheduler: str | None, workers: int):
    """A Dask client, closed by `stack`: on a new LocalCluster (closed by `stack` too), or
    connected to the scheduler at `scheduler`, whose cluster is left running."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        cluster = stack.enter_context(LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.CRITICAL))     # a failing point is reported once, as one line
        return stack.enter_context(Client(cluster, set_as_default=False))
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, ValueError) as exc:
        raise HrnError(f"--scheduler {scheduler}: no Dask scheduler there ({error_line(exc)})") from None
    return stack.enter_context(client)


def _collect(points: list, calls: Iterable[tuple[int, Callable[[], Any]]], progress: bool,
             desc: str) -> list:
    """Results by point index from (index, call) pairs, counted on a progress bar; a call that
    raises fails the sweep."""
    results = [None] * len(points)
    with tqdm(total=len(points), desc=desc, unit="point", leave=False, disable=not progress) as bar:
        for i, call in calls:
            try:
                results[i] = call()
            except (Exception, CancelledError) as exc:
                raise HrnError(f"{desc}: point {i + 1}/{len(points)} ({_label(points[i])}) failed: "
                               f"{_describe(exc)}") from exc
            bar.update()
    return results


def _label(point) -> str:
    """A point in one short line: key=value pairs for a dict, else its repr."""
    text = ", ".join(f"{k}={v!r}" for k, v in point.items()) if isinstance(point, dict) else repr(point)
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 3] + "..."


def _describe(exc: BaseException) -> str:
    """An exception's class and the last line of its message."""
    name, line = type(exc).__name__, error_line(exc)
    return name if line == name else f"{name}: {line}"
