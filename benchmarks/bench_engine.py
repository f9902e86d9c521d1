"""Speed check of the event engine: the Python specification against its compiled twin.

A chain problem (200,000 samples of ~15 jobs over 10 pools with replicas, bounded and
unbounded queues, cut-through leads, router delays, 8 samples in flight, Poisson-like
arrivals): the Python engine runs the first 20,000 samples, the compiled one all of them
(and the same 20,000, whose outcome must be identical). Prints samples/s of each.

    python benchmarks/bench_engine.py [--samples N] [--python-samples M] [--jobs J] [--pools P]

`--samples 1000000 --jobs 60 --python-samples 2000` is the large check (1M samples x 60 jobs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hrn_hw.dataflow import engine, native


def _route(rng: np.random.Generator, jobs: int, capacity: np.ndarray) -> np.ndarray:
    """Pools of a chain: ascending, where a bounded pool is only entered from a lower pool (no
    cycle of full queues, so no deadlock); a repeat is moved to the unbounded pool below it."""
    route = np.sort(rng.integers(0, len(capacity), size=jobs))
    for k in range(1, jobs):
        if capacity[route[k]] != engine.UNBOUNDED and route[k] <= route[k - 1]:
            route[k] -= 1
    return route


def chain_problem(samples: int, jobs: int, pools: int, in_flight: int, seed: int = 0) -> engine.Problem:
    """Three classes of chains of about `jobs` jobs over `pools` pools (1-3 servers each)."""
    rng = np.random.default_rng(seed)
    servers = rng.integers(1, 4, size=pools)
    capacity = np.where(np.arange(pools) % 3 == 1, 2, engine.UNBOUNDED)
    lengths = jobs + rng.integers(-1, 2, size=3)
    job_pool = np.concatenate([_route(rng, n, capacity) for n in lengths])
    duration = rng.integers(2, 40, size=len(job_pool))
    lead = np.where(rng.random(len(job_pool)) < 0.3, duration // 2, duration)
    delay = np.where((capacity[job_pool] == engine.UNBOUNDED) & (rng.random(len(job_pool)) < 0.3), 3, 0)
    mean_gap = duration.sum() / servers.sum() / len(lengths) * 1.2
    return engine.Problem(
        pool_servers=np.repeat(np.arange(pools), servers), pool_capacity=capacity,
        chain_start=np.concatenate([[0], np.cumsum(lengths)]), job_pool=job_pool, job_delay=delay,
        job_duration=duration, job_lead=lead, sample_class=rng.integers(0, 3, size=samples),
        arrival=np.cumsum(rng.exponential(mean_gap, size=samples).astype(np.int64)), in_flight=in_flight)


def prefix(pb: engine.Problem, n: int) -> engine.Problem:
    """The same problem with its first `n` samples."""
    return engine.Problem(pb.pool_servers, pb.pool_capacity, pb.chain_start, pb.job_pool, pb.job_delay,
                          pb.job_duration, pb.job_lead, pb.sample_class[:n], pb.arrival[:n], pb.in_flight)


def timed(fn, pb: engine.Problem) -> tuple[engine.Outcome, float]:
    """The outcome of fn(pb) and the seconds it took."""
    t0 = time.perf_counter()
    out = fn(pb)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--python-samples", type=int, default=20_000)
    ap.add_argument("--jobs", type=int, default=15)
    ap.add_argument("--pools", type=int, default=10)
    ap.add_argument("--in-flight", type=int, default=8)
    args = ap.parse_args()
    pb = chain_problem(args.samples, args.jobs, args.pools, args.in_flight)
    jobs = int(np.diff(pb.chain_start)[pb.sample_class].sum())
    t0 = time.perf_counter()
    native.build()
    print(f"build/load: {time.perf_counter() - t0:.2f} s ({native.library_path()})")
    small = prefix(pb, args.python_samples)
    ref, t_py = timed(engine.simulate, small)
    twin, _ = timed(lambda p: native.run(p, "native"), small)
    assert twin.same_as(ref), "the compiled engine differs from the Python one"
    full, t_c = timed(lambda p: native.run(p, "native"), pb)
    n_py = small.num_samples
    print(f"python:   {n_py:>9} samples in {t_py:7.3f} s = {n_py / t_py:12,.0f} samples/s")
    print(f"compiled: {pb.num_samples:>9} samples in {t_c:7.3f} s = {pb.num_samples / t_c:12,.0f} samples/s "
          f"({jobs / t_c:,.0f} jobs/s, {jobs / pb.num_samples:.1f} jobs/sample)")
    print(f"speed-up: {(pb.num_samples / t_c) / (n_py / t_py):.0f}x; outcomes equal on the first {n_py} samples; "
          f"mean latency {np.mean(full.done - full.admit):.1f} cycles, max queue {full.max_queue.tolist()}")


if __name__ == "__main__":
    main()
