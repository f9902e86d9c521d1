"""hrn_hw.sweep: results in the points' order on a LocalCluster, grid order, one-line errors,
kept failures and a retried point whose worker died."""

from __future__ import annotations

import logging
import os
import time

import pytest

from hrn_hw import sweep
from hrn_hw.errors import HrnError
from hrn_hw.sweep import Failed, grid, run_sweep


def square_where(point):
    """A sweep function the Dask workers import from this module: (x squared, its process);
    points with fail=True raise, with die=True kill their worker, and slow ones finish late so completion order differs."""
    if point.get("fail"):
        raise ValueError(f"cannot square {point['x']}\nx={point['x']} is marked to fail")
    if point.get("die"):
        os._exit(1)                       # the worker process dies with the point
    time.sleep(point.get("sleep", 0.0))
    return point["x"] ** 2, os.getpid()


def test_grid_first_axis_slowest():
    assert grid(arch=["rtl", "fpga"], in_flight=[1, 2]) == [
        {"arch": "rtl", "in_flight": 1}, {"arch": "rtl", "in_flight": 2},
        {"arch": "fpga", "in_flight": 1}, {"arch": "fpga", "in_flight": 2}]
    assert grid(a=[1], b=[]) == []


def test_local_cluster_keeps_points_order():
    # Early points sleep longest, so the workers finish them last.
    points = [{"x": x, "sleep": 0.3 if x < 2 else 0.0} for x in range(6)]
    results = run_sweep(square_where, points, workers=2, progress=False)
    assert [value for value, _ in results] == [x * x for x in range(6)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and len(pids) == 2


def test_failing_point_names_it(capsys):
    points = grid(x=[1, 2, 3], fail=[False]) + [{"x": 7, "fail": True}]
    with pytest.raises(HrnError) as info:
        run_sweep(square_where, points, workers=2, desc="squares")
    message = str(info.value)
    assert "\n" not in message
    assert message == ("squares: point 4/4 (x=7, fail=True) failed: "
                       "ValueError: x=7 is marked to fail")


def test_kept_failures_and_a_point_that_kills_its_workers():
    points = [{"x": 2}, {"x": 3, "die": True}, {"x": 4, "fail": True}, {"x": 5}]
    info = {}
    results = run_sweep(square_where, points, workers=2, progress=False, keep_failures=True, info=info)
    assert [r[0] for r in results[::3]] == [4, 25] and info == {"workers": 2}
    assert results[1] == Failed("sweep: point 2/4 (x=3, die=True) failed after 2 attempts: "
                                "LostWorker: its worker died", 2)
    assert results[2] == Failed("sweep: point 3/4 (x=4, fail=True) failed: ValueError: x=4 is marked to fail", 1)
    serial = run_sweep(square_where, points[2:], workers=0, progress=False, keep_failures=True)
    assert serial[0].attempts == 1 and serial[1] == (25, os.getpid())


def test_workers_0_runs_serially_in_process():
    results = run_sweep(square_where, grid(x=[3, 1, 2]), workers=0, progress=False)
    assert results == [(9, os.getpid()), (1, os.getpid()), (4, os.getpid())]
    with pytest.raises(HrnError, match=r"^sweep: point 2/2 \(x=5, fail=True\) failed: ValueError"):
        run_sweep(square_where, [{"x": 1}, {"x": 5, "fail": True}], workers=0, progress=False)
    assert run_sweep(square_where, [], progress=False) == []


def test_unreachable_scheduler_is_one_line_error(monkeypatch):
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "2s")
    start = time.monotonic()
    with pytest.raises(HrnError, match=r"^--scheduler tcp://127\.0\.0\.1:1: no Dask scheduler") as info:
        run_sweep(square_where, grid(x=[1, 2]), scheduler="tcp://127.0.0.1:1", progress=False)
    assert time.monotonic() - start < 8
    assert "\n" not in str(info.value)


def test_scheduler_address_borrows_a_running_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.WARNING) as cluster:
        address = cluster.scheduler_address
        assert run_sweep(square_where, grid(x=[2, 3]), scheduler=address, progress=False)[1][0] == 9
        # The cluster is still up, and a single point goes to it rather than this process.
        [(value, pid)] = run_sweep(square_where, [{"x": 4}], scheduler=address, progress=False)
        assert value == 16 and pid != os.getpid()
