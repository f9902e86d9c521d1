"""The event engine: hand-computed cases for the Python specification, the compiled twin equal to
it on random problems (every output, deadlocks included), Problem.check, build and fallback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from hrn_hw.dataflow import engine, native
from hrn_hw.errors import HrnError

U = engine.UNBOUNDED


def make(servers, capacity, chains, classes, arrival=None, in_flight=0, trace=0) -> engine.Problem:
    """A problem from chains of jobs (pool, duration[, lead[, delay]]); lead None or absent:
    store-and-forward. `classes`: each sample's class; arrivals default to 0."""
    starts, cols = [0], {"pool": [], "duration": [], "lead": [], "delay": []}
    for chain in chains:
        for pool, duration, *rest in chain:
            lead = rest[0] if rest and rest[0] is not None else duration
            for name, value in zip(cols, (pool, duration, lead, rest[1] if len(rest) > 1 else 0)):
                cols[name].append(value)
        starts.append(len(cols["pool"]))
    arrival = [0] * len(classes) if arrival is None else arrival
    return engine.Problem(servers, capacity, starts, cols["pool"], cols["delay"], cols["duration"], cols["lead"],
                          classes, arrival, in_flight, trace)


def expect(outcome: engine.Outcome, **fields) -> None:
    """Each named field of `outcome` equals the given list or int."""
    for name, want in fields.items():
        got = getattr(outcome, name)
        assert (got.tolist() if isinstance(got, np.ndarray) else got) == want, name


# ---- hand-computed cases (the Python engine) -------------------------------------------------

SERIAL = ([0, 1], [U, U], [[(0, 10), (1, 20)]])


def test_serial_chain_one_in_flight():
    out = engine.simulate(make(*SERIAL, [0, 0, 0], in_flight=1, trace=1))
    expect(out, admit=[0, 30, 60], done=[30, 60, 90], busy=[30, 60], blocked=[0, 0], max_queue=[1, 1],
           inflight_area=90, trace=[[0, 0, 0, 0, 10, 10], [0, 1, 1, 10, 30, 30]])


def test_serial_chain_unbounded_in_flight():
    # s1 waits at pool 1 from 20; at 30 s2's hand-off joins it before the settle step: queue of 2.
    out = engine.simulate(make(*SERIAL, [0, 0, 0], in_flight=0))
    expect(out, admit=[0, 0, 0], done=[30, 50, 70], busy=[30, 60], blocked=[0, 0], max_queue=[3, 2],
           inflight_area=150)


def test_bounded_queue_blocks_the_server_upstream():
    # Pool 1 (20 cycles) holds one waiting sample: from the third sample on, pool 0's server
    # finishes at 40 and 60 but hands its sample on only at 50 and 70 (10 + 10 cycles blocked).
    out = engine.simulate(make([0, 1, 2], [U, 1, U], [[(0, 10), (1, 20), (2, 5)]], [0] * 5, trace=2))
    expect(out, admit=[0] * 5, done=[35, 55, 75, 95, 115], busy=[50, 100, 25], blocked=[20, 0, 0],
           max_queue=[5, 1, 1], inflight_area=375)
    expect(out, trace=[[0, 0, 0, 0, 10, 10], [1, 0, 0, 10, 20, 20], [0, 1, 1, 10, 30, 30],
                       [1, 1, 1, 30, 50, 50], [0, 2, 2, 30, 35, 35], [1, 2, 2, 50, 55, 55]])


def test_cut_through_lead():
    # Handed on 4 cycles into a 10-cycle job: pool 1 starts at 4 while pool 0 still works.
    out = engine.simulate(make([0, 1], [U, U], [[(0, 10, 4), (1, 10)]], [0, 0], trace=2))
    expect(out, done=[14, 24], busy=[20, 20], blocked=[0, 0], inflight_area=38,
           trace=[[0, 0, 0, 0, 10, 10], [0, 1, 1, 4, 14, 14], [1, 0, 0, 10, 20, 20], [1, 1, 1, 14, 24, 24]])


def test_router_delay():
    out = engine.simulate(make([0, 1], [U, U], [[(0, 10), (1, 5, None, 3)]], [0], trace=1))
    expect(out, done=[18], inflight_area=18, trace=[[0, 0, 0, 0, 10, 10], [0, 1, 1, 13, 18, 18]])


def test_replicas_take_the_lowest_idle_server():
    out = engine.simulate(make([0, 0], [U], [[(0, 10)]], [0, 0, 0], trace=3))
    expect(out, done=[10, 10, 20], busy=[20, 10], max_queue=[3],
           trace=[[0, 0, 0, 0, 10, 10], [1, 0, 1, 0, 10, 10], [2, 0, 0, 10, 20, 20]])
    # Server 1 frees first (a 3-cycle class): the next samples take it while server 0 works.
    out = engine.simulate(make([0, 0], [U], [[(0, 10)], [(0, 3)]], [0, 1, 1, 0]))
    expect(out, done=[10, 3, 6, 16], busy=[10, 16])


def test_arrivals():
    out = engine.simulate(make([0], [U], [[(0, 5)]], [0] * 4, arrival=[0, 3, 7, 30]))
    expect(out, admit=[0, 3, 7, 30], done=[5, 10, 15, 35], busy=[20], max_queue=[1], inflight_area=25)


def test_poisson_arrivals_single_server():
    # One server, one job: done_i = max(arrival_i, done_{i-1}) + duration (Lindley's recursion).
    arrival = np.cumsum(np.random.default_rng(5).exponential(6.0, size=200).astype(np.int64))
    out = engine.simulate(make([0], [U], [[(0, 5)]], [0] * 200, arrival=arrival))
    done, last = [], 0
    for a in arrival.tolist():
        last = max(a, last) + 5
        done.append(last)
    expect(out, admit=arrival.tolist(), done=done, busy=[1000], inflight_area=int(sum(done) - arrival.sum()))


RING = ([0, 1], [1, 1], [[(0, 1), (1, 1)], [(1, 1), (0, 1)]], [0, 1] * 3)


def test_ring_with_room_finishes():
    expect(engine.simulate(make(*RING, in_flight=2)), admit=[0, 0, 2, 2, 4, 4], done=[2, 2, 4, 4, 6, 6],
           inflight_area=12)


@pytest.mark.parametrize("case", [
    (RING, "6 of 6 samples never finished (cycle 1): they wait for room in the queues of pools [0, 1]"),
    (([0], [1], [[(0, 1), (0, 1)]], [0] * 3), "3 of 3 samples never finished (cycle 1): they wait for room in "
                                              "the queues of pools [0]"),
])
def test_deadlock(case):
    args, message = case
    with pytest.raises(engine.DeadlockError, match=re.escape(message)):
        engine.simulate(make(*args))


# ---- Problem.check ---------------------------------------------------------------------------

VALID = dict(pool_servers=[0, 1], pool_capacity=[U, 2], chain_start=[0, 2], job_pool=[0, 1], job_delay=[0, 0],
             job_duration=[3, 4], job_lead=[3, 4], sample_class=[0, 0], arrival=[0, 1])


@pytest.mark.parametrize("change, message", [
    (dict(pool_capacity=[], pool_servers=[]), "at least one pool"),
    (dict(chain_start=[0]), "at least one pool"),
    (dict(pool_servers=[1, 0]), "ascending"),
    (dict(pool_servers=[0, 2]), "ascending"),
    (dict(pool_servers=[0, 0]), "at least one server"),
    (dict(pool_capacity=[U, 0]), "capacity"),
    (dict(chain_start=[0, 1]), "offsets"),
    (dict(chain_start=[0, 0, 2]), "offsets"),
    (dict(job_delay=[0]), "differ in length"),
    (dict(job_pool=[0, 2]), "unknown pool"),
    (dict(job_duration=[0, 4], job_lead=[0, 4]), "durations"),
    (dict(job_delay=[-1, 0]), "delays"),
    (dict(job_lead=[4, 4]), "lead"),
    (dict(job_lead=[-1, 4]), "lead"),
    (dict(job_delay=[0, 1]), "delay must be unbounded"),
    (dict(arrival=[0]), "one arrival"),
    (dict(sample_class=[0, 1]), "unknown class"),
    (dict(arrival=[1, 0]), "non-decreasing"),
    (dict(arrival=[-1, 0]), "non-decreasing"),
    (dict(in_flight=-1), "in_flight"),
    (dict(trace_samples=-1), "trace_samples"),
])
def test_check_rejects(change, message):
    with pytest.raises(ValueError, match=message):
        engine.Problem(**{**VALID, **change})


def test_check_accepts_valid():
    engine.Problem(**VALID)


# ---- the compiled twin -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled():
    """The compiled engine from the shared cache (skips where it does not build)."""
    if native.switched_off():
        pytest.skip(f"{native.ENV_SWITCH}=0")
    reason = native.problem_reason()
    if reason is not None:
        pytest.skip(reason)
    return native


def random_problem(seed: int, large: bool = False) -> engine.Problem:
    """Random pools, capacities (UNBOUNDED or 1-3), chains, leads, delays (into unbounded pools),
    arrivals, in_flight and traced samples; `large`: up to 140 pools of up to 100 servers."""
    rng = np.random.default_rng(seed)
    P = int(rng.integers(1, 140 if large else 7))
    per_pool = rng.integers(1, int(rng.choice([2, 4, 100])) if large else 4, size=P)
    capacity = np.where(rng.random(P) < 0.5, U, rng.integers(1, 4, size=P))
    lengths = rng.integers(1, 30 if large else 13, size=int(rng.integers(1, 4)))
    job_pool = rng.integers(0, P, size=int(lengths.sum()))
    duration = rng.integers(1, 51, size=len(job_pool))
    lead = np.minimum((rng.random(len(job_pool)) * (duration + 1)).astype(np.int64), duration)
    routed = (capacity[job_pool] == U) & (rng.random(len(job_pool)) < 0.3)
    delay = np.where(routed, rng.integers(1, 20, size=len(job_pool)), 0)
    N = int(rng.integers(1, 400 if large else 41))
    arrival = np.zeros(N, np.int64) if rng.random() < 0.4 else np.cumsum(rng.integers(0, 30, size=N))
    return engine.Problem(np.repeat(np.arange(P), per_pool), capacity, np.concatenate([[0], np.cumsum(lengths)]),
                          job_pool, delay, duration, lead, rng.integers(0, len(lengths), size=N), arrival,
                          in_flight=int(rng.integers(0, 40 if large else 7)),
                          trace_samples=int(rng.integers(0, N + 1)))


def outcome_or_deadlock(simulate, problem):
    """The outcome, or the DeadlockError's message."""
    try:
        return simulate(problem)
    except engine.DeadlockError as exc:
        return str(exc)


def assert_twins(problems) -> int:
    """Both engines give the same outcome or the same deadlock on each problem; returns deadlocks."""
    deadlocks = 0
    for i, pb in enumerate(problems):
        want = outcome_or_deadlock(engine.simulate, pb)
        got = outcome_or_deadlock(lambda p: native.run(p, "native"), pb)
        if isinstance(want, str) or isinstance(got, str):
            assert got == want, i
            deadlocks += 1
        else:
            assert got.same_as(want), i
    return deadlocks


def test_twin_random_problems(compiled):
    deadlocks = assert_twins(random_problem(seed) for seed in range(300))
    assert 20 < deadlocks < 150          # both outcomes are well represented


def test_twin_random_large_problems(compiled):
    assert_twins(random_problem(seed, large=True) for seed in range(1000, 1030))


def test_twin_hand_cases(compiled):
    cases = [make(*SERIAL, [0, 0, 0], in_flight=1, trace=3), make(*RING), make(*RING, in_flight=2, trace=9),
             make([0, 1, 2], [U, 1, U], [[(0, 10), (1, 20), (2, 5)]], [0] * 5, trace=5)]
    assert assert_twins(cases) == 1


def test_twin_checks_the_problem(compiled):
    pb = make(*SERIAL, [0])
    pb.job_duration[0] = 0               # changed after construction: the twin checks again
    with pytest.raises(ValueError, match="durations"):
        native.run(pb, "native")


def test_run_prefers(compiled):
    pb = make(*SERIAL, [0, 0, 0])
    want = engine.simulate(pb)
    for prefer in ("auto", "native", "python"):
        assert native.run(pb, prefer).same_as(want)
    with pytest.raises(HrnError, match="unknown engine"):
        native.run(pb, "fast")


def test_switched_off_runs_python(monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    monkeypatch.setattr(native, "simulate", None)    # the compiled path would fail
    pb = make(*SERIAL, [0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.run(pb).same_as(engine.simulate(pb))
    assert not native.available() and native.ENV_SWITCH in native.problem_reason()


@pytest.mark.parametrize("cxx, reason", [("/nonexistent/g++", "not found"), ("false", "cannot build")])
def test_broken_compiler(cxx, reason, tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(native.ENV_CXX, cxx)
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    monkeypatch.setattr(native, "_warned", False)
    pb = make(*SERIAL, [0, 0])
    with pytest.raises(HrnError, match=reason) as info:
        native.run(pb, "native")
    assert "\n" not in str(info.value)
    assert not native.available()
    with pytest.warns(RuntimeWarning, match="Python event engine runs") as caught:
        assert native.run(pb).same_as(engine.simulate(pb))
        native.run(pb)
    assert len(caught) == 1                          # once per process
    assert list(tmp_path.iterdir()) == []            # no half-written build left


def test_library_name_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    path = native.library_path()
    assert path.parent == tmp_path and path.suffix == ".so"
    changed = tmp_path / "engine.cpp"
    changed.write_bytes(native.SOURCE.read_bytes() + b"\n")
    monkeypatch.setattr(native, "SOURCE", changed)
    assert native.library_path() != path


def test_concurrent_builds_into_a_fresh_dir(compiled, tmp_path, monkeypatch):
    """Two processes build at once; the library that stays is whole and the twin runs from it."""
    env = {**os.environ, native.ENV_DIR: str(tmp_path)}
    code = "from hrn_hw.dataflow import native; print(native.build())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    paths = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert [proc.returncode for proc in procs] == [0, 0]
    assert len(paths) == 1 and [p.name for p in tmp_path.iterdir()] == [os.path.basename(paths.pop())]
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    pb = make(*SERIAL, [0, 0, 0], trace=2)
    assert native.run(pb, "native").same_as(engine.simulate(pb))
    path = native.library_path()
    mtime = path.stat().st_mtime_ns
    assert path.parent == tmp_path and native.build() == path and path.stat().st_mtime_ns == mtime
