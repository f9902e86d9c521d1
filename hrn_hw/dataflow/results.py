"""What a simulation measured, in the terms a chip designer asks for.

From the engine's `Outcome` and the `Mapped` names: throughput (samples per cycle, and per
second at the architecture's clock, labelled nominal), the initiation interval, latency
statistics, utilisation of every server, the bottleneck, the FIFO depths the run used and
their memory, and the consistency checks of the validation ladder (conservation, no server
above full use, Little's law).
"""

from __future__ import annotations

import numpy as np

from hrn_hw.dataflow.engine import UNBOUNDED, Outcome
from hrn_hw.dataflow.mapped import Mapped


def _stats(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.int64)
    return {"min": int(v.min()), "median": float(np.median(v)), "mean": float(v.mean()),
            "p99": float(np.percentile(v, 99)), "max": int(v.max())}


def pool_work(mapped: Mapped) -> np.ndarray:
    """Service cycles each pool owes per sample of the workload, on average [P] (the sum over
    samples of their jobs' durations in that pool, over N)."""
    pb = mapped.problem
    per_class = np.zeros((len(pb.chain_start) - 1, pb.num_pools), dtype=np.float64)
    for c in range(len(pb.chain_start) - 1):
        lo, hi = pb.chain_start[c], pb.chain_start[c + 1]
        np.add.at(per_class[c], pb.job_pool[lo:hi], pb.job_duration[lo:hi])
    counts = np.bincount(pb.sample_class, minlength=len(per_class))
    return counts @ per_class / max(pb.num_samples, 1)


def bound_interval(mapped: Mapped) -> dict:
    """The initiation interval no mapping of this workload can beat: per pool, its work per
    sample over its servers; the largest is the bound and its pool the engine that sets it."""
    servers = np.bincount(mapped.problem.pool_servers, minlength=mapped.problem.num_pools)
    per_pool = pool_work(mapped) / servers
    worst = int(np.argmax(per_pool))
    return {"cycles": float(per_pool[worst]), "pool": mapped.pools[worst],
            "per_pool": {name: float(v) for name, v in zip(mapped.pools, per_pool)}}


def bottleneck_kind(busiest: float, mean_in_flight: float, limit: int) -> str:
    """What bounds the throughput: "engine" (the busiest pool works >= 90 % of the run),
    "in-flight" (the samples-in-flight limit is reached on average), or "arrivals" (the chip
    waits for work)."""
    if busiest >= 0.9:
        return "engine"
    if limit and mean_in_flight >= 0.95 * limit:
        return "in-flight"
    return "arrivals"


def summarise(mapped: Mapped, out: Outcome, clock_mhz: float, clock_note: str = "nominal") -> dict:
    """The results dictionary of one run (simulate.json's "results")."""
    pb = mapped.problem
    n = pb.num_samples
    first, last = int(out.admit.min()), int(out.done.max())
    span = max(last - first, 1)
    latency = out.done - out.admit
    sojourn = out.done - pb.arrival
    util = out.busy / span
    order = np.sort(out.done)
    gaps = np.diff(order) if n > 1 else np.zeros(1, dtype=np.int64)
    throughput = n / span
    servers = [{"name": name, "kind": kind, "pool": mapped.pools[p], "busy_cycles": int(b),
                "blocked_cycles": int(bl), "utilisation": float(u)}
               for name, kind, p, b, bl, u in zip(mapped.servers, mapped.server_kind, pb.pool_servers,
                                                   out.busy, out.blocked, util)]
    pools = []
    for p, name in enumerate(mapped.pools):
        mine = pb.pool_servers == p
        cap = int(pb.pool_capacity[p])
        depth = int(out.max_queue[p]) if cap == UNBOUNDED else cap
        pools.append({"name": name, "servers": int(mine.sum()), "utilisation": float(util[mine].mean()),
                      "fifo_depth": None if cap == UNBOUNDED else cap, "max_waiting": int(out.max_queue[p]),
                      "fifo_bits": depth * int(mapped.pool_frame_bits[p])})
    busiest = max(pools, key=lambda q: q["utilisation"])
    mean_in_flight = out.inflight_area / span
    limit = int(pb.in_flight)
    little = throughput * float(latency.mean())
    return {
        "samples": n,
        "span_cycles": span,
        "clock_mhz": clock_mhz, "clock_note": clock_note,
        "throughput": {"samples_per_cycle": throughput, "samples_per_s": throughput * clock_mhz * 1e6,
                       "interval_cycles": span / n, "median_interval_cycles": float(np.median(gaps))},
        "latency_cycles": _stats(latency),
        "latency_us": {k: v / clock_mhz for k, v in _stats(latency).items()},
        "sojourn_cycles": _stats(sojourn),
        "in_flight": {"limit": int(pb.in_flight), "mean": mean_in_flight},
        "bottleneck": {"pool": busiest["name"], "utilisation": busiest["utilisation"],
                       "limit": bottleneck_kind(busiest["utilisation"], mean_in_flight, limit),
                       "bound": bound_interval(mapped)},
        "pools": pools,
        "servers": servers,
        "memory_bits": {"slots": int(pb.in_flight) * mapped.slot_bits if pb.in_flight else None,
                        "fifos": int(sum(q["fifo_bits"] for q in pools))},
        "checks": {"little_law_relative_error": abs(mean_in_flight - little) / max(little, 1e-12),
                   "max_utilisation": float(util.max()),
                   "every_sample_left_once": bool((out.done > out.admit).all() and (out.admit >= pb.arrival).all())},
    }


def _bottleneck_line(res: dict, named) -> str:
    b = res["bottleneck"]
    busiest = f"{named(b['pool'])} {100 * b['utilisation']:.1f} % busy"
    if b["limit"] == "in-flight":
        return f"the samples-in-flight limit ({res['in_flight']['limit']}); busiest {busiest}"
    if b["limit"] == "arrivals":
        return f"none: the chip waits for arrivals; busiest {busiest}"
    return busiest


def format_table(res: dict, title: str, hosts: dict | None = None) -> str:
    """The printed summary: throughput, latency, bottleneck, the busiest servers; `hosts`
    names what runs on a pool ("core(0,1)" -> "hash+normaliser")."""
    hosts = hosts or {}

    def named(pool: str) -> str:
        return f"{pool} [{hosts[pool]}]" if pool in hosts else pool

    t, lat = res["throughput"], res["latency_cycles"]
    lines = [title,
             f"  throughput   {t['samples_per_cycle']:.6g} samples/cycle = {t['samples_per_s']:,.0f} samples/s at "
             f"{res['clock_mhz']:g} MHz ({res['clock_note']}); interval {t['interval_cycles']:,.1f} cycles "
             f"(median {t['median_interval_cycles']:,.0f})",
             f"  latency      cycles min {lat['min']:,} / median {lat['median']:,.0f} / p99 {lat['p99']:,.0f} / "
             f"max {lat['max']:,}",
             f"  bottleneck   {_bottleneck_line(res, named)}; engine bound {res['bottleneck']['bound']['cycles']:,.1f} "
             f"cycles/sample ({named(res['bottleneck']['bound']['pool'])})",
             f"  in flight    mean {res['in_flight']['mean']:.2f} (limit {res['in_flight']['limit'] or 'none'})"]
    pools = sorted(res["pools"], key=lambda q: -q["utilisation"])
    shown = [q for q in pools if not q["name"].startswith("link(")][:12]
    links = [q for q in pools if q["name"].startswith("link(")]
    lines.append("  utilisation  " + ", ".join(f"{named(q['name'])}{'' if q['servers'] == 1 else ' x' + str(q['servers'])} "
                                                f"{100 * q['utilisation']:.1f} %" for q in shown))
    if links:
        lines.append(f"  links        busiest {links[0]['name']} {100 * links[0]['utilisation']:.1f} %, "
                     f"mean {100 * np.mean([q['utilisation'] for q in links]):.1f} % over {len(links)}")
    return "\n".join(lines)
