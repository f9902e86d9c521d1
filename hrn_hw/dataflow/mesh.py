"""Mesh geometry and the network on chip as engine jobs (the `manycore` architecture's NoC).

An R x C mesh of cells (row, col); cell (r, c) holds core `core(r,c)` and a router joined to
its neighbours by one directed link each way, `link(r,c)>(r2,c2)`: a pool of one server
(kind "link") with an unbounded queue. Packets take XY dimension-order routes (first along
the row to the target column, then along the column to the target row).

A packet of B bytes is one job per link of its route: label "noc", the link's pool, delay =
router_delay (the router ahead of the link), duration = ceil(B / link_bytes_per_cycle) (the
link's serialisation: it carries one packet at a time, so packets sharing a link queue and
serialise), lead 0 on every hop but the last (the head flit goes on while the body streams
through: cut-through) and lead = duration on the last (the packet has fully arrived). On an
idle mesh a packet therefore arrives hops x router_delay + ceil(B / width) cycles after its
hand-off (`zero_load_latency`); a packet to its own cell makes no jobs.

Synthetic traffic (`uniform_traffic`, `saturation_throughput`) checks the NoC against the
closed forms of a mesh (docs/design.md section 6, validation ladder).
"""

from __future__ import annotations

import math

import numpy as np

from hrn_hw.dataflow.mapped import Mapped, PoolTable, build

Cell = tuple  # (row, col)


def core_name(cell: Cell) -> str:
    """Pool and server name of the core in `cell`."""
    return f"core({cell[0]},{cell[1]})"


def link_name(a: Cell, b: Cell) -> str:
    """Pool and server name of the directed link from cell a to its neighbour b."""
    return f"link({a[0]},{a[1]})>({b[0]},{b[1]})"


def cells(mesh: tuple) -> list[Cell]:
    """Every cell of an (R, C) mesh in row-major order."""
    rows, cols = mesh
    return [(r, c) for r in range(rows) for c in range(cols)]


def links(mesh: tuple) -> list[tuple[Cell, Cell]]:
    """Every directed link between neighbours: per cell in row-major order, east, west, south, north."""
    rows, cols = mesh
    out = []
    for r, c in cells(mesh):
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                out.append(((r, c), (r + dr, c + dc)))
    return out


def hops(a: Cell, b: Cell) -> int:
    """Links on a minimal (XY) route: the Manhattan distance."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def xy_route(a: Cell, b: Cell) -> list[tuple[Cell, Cell]]:
    """Directed links from a to b: along the row to b's column first, then along the column."""
    route, (r, c) = [], a
    while c != b[1]:
        step = (r, c + (1 if b[1] > c else -1))
        route.append(((r, c), step))
        c = step[1]
    while r != b[0]:
        step = (r + (1 if b[0] > r else -1), c)
        route.append(((r, c), step))
        r = step[0]
    return route


def serialisation(nbytes: int, width: int) -> int:
    """Cycles a link needs for a packet of `nbytes` (at least one)."""
    return max(1, math.ceil(nbytes / width))


def zero_load_latency(hops: int, nbytes: int, router_delay: int, width: int) -> int:
    """Cycles from hand-off to arrival of a packet on an idle mesh (0 when it stays in its cell)."""
    return 0 if hops == 0 else hops * router_delay + serialisation(nbytes, width)


def packet_jobs(a: Cell, b: Cell, nbytes: int, router_delay: int, width: int) -> list[tuple]:
    """The hop jobs (label, pool, delay, duration, lead) of a packet from a to b."""
    route = xy_route(a, b)
    dur = serialisation(nbytes, width)
    return [("noc", link_name(x, y), router_delay, dur, dur if i == len(route) - 1 else 0)
            for i, (x, y) in enumerate(route)]


def add_links(table: PoolTable, mesh: tuple) -> None:
    """One pool per directed link of the mesh (one server, unbounded queue)."""
    for a, b in links(mesh):
        table.add(link_name(a, b), "link")


def uniform_traffic(k: int, rate: float, packet_bytes: int, cycles: int, router_delay: int, width: int,
                    seed: int = 0) -> Mapped:
    """Uniform random traffic on a k x k mesh: in each of `cycles` cycles every node injects a
    packet with probability `rate` to a uniformly random other node. Each packet is a sample
    whose chain is its hops; no limit on packets in flight. The draws do not depend on `rate`
    (a packet is injected when its uniform draw is below it), so a higher rate offers a
    superset of the packets of a lower one with the same seed."""
    n = k * k
    rng = np.random.default_rng(seed)
    draw = rng.random((cycles, n))
    dest = rng.integers(0, n - 1, size=(cycles, n))
    t, src = np.nonzero(draw < rate)
    dst = dest[t, src]
    dst = dst + (dst >= src)                      # a uniformly random node other than the source
    grid = cells((k, k))
    table = PoolTable()
    add_links(table, (k, k))
    chains = [packet_jobs(grid[i], grid[j], packet_bytes, router_delay, width)
              for i in range(n) for j in range(n) if i != j]
    pair_class = src * (n - 1) + dst - (dst > src)
    return build(table, chains, pair_class, t.astype(np.int64), 0, 0,
                 info={"mesh": [k, k], "traffic": "uniform random", "rate": rate, "packet_bytes": packet_bytes})


def saturation_bound(k: int, packet_bytes: int, width: int) -> float:
    """Injection rate (packets/node/cycle) at which XY routing of uniform random traffic fills the
    busiest links of a k x k mesh.

    The textbook bound is rate = 4 / (k x ser) (ser = ceil(B / width) cycles per packet per
    link): each link across the bisection carries k x rate / 4 packets per cycle. Exactly, with
    destinations uniform over the k^2 - 1 OTHER nodes: the link between columns j and j + 1 of
    a row carries the packets of that row's j + 1 nodes west of it to the (k - j - 1) x k nodes
    east of it (XY routes travel along the source row), that is
    rate x (j + 1) x (k - j - 1) x k / (k^2 - 1), largest at the middle, floor(k/2) x ceil(k/2);
    columns are the same by symmetry. For even k the load is k^2 / (k^2 - 1) x k x rate / 4,
    and saturation (load x ser = 1) is at (k^2 - 1) / (k^2) x 4 / (k x ser)."""
    ser = serialisation(packet_bytes, width)
    return (k * k - 1) / (ser * k * (k // 2) * ((k + 1) // 2))


def accepted_throughput(k: int, rate: float, packet_bytes: int, cycles: int, router_delay: int, width: int,
                        seed: int = 0, warmup: int | None = None) -> tuple[float, float]:
    """(offered, accepted) packets/node/cycle of uniform random traffic in the steady-state window
    [warmup, cycles) (warmup: a quarter of the run by default): packets injected in the window
    against packets delivered in it."""
    from hrn_hw.dataflow.native import run

    warmup = cycles // 4 if warmup is None else warmup
    mapped = uniform_traffic(k, rate, packet_bytes, cycles, router_delay, width, seed)
    outcome = run(mapped.problem)
    window = k * k * (cycles - warmup)
    offered = np.count_nonzero(mapped.problem.arrival >= warmup) / window
    accepted = np.count_nonzero((outcome.done >= warmup) & (outcome.done < cycles)) / window
    return offered, accepted


def saturation_throughput(k: int, packet_bytes: int, router_delay: int = 2, width: int = 16,
                          cycles: int | None = None, eps: float = 0.02, tol: float = 0.005, seed: int = 0) -> float:
    """Measured saturation throughput (packets/node/cycle) of uniform random traffic on a k x k
    mesh: binary search on the injection rate for the load where accepted throughput stops
    following offered load (saturated: accepted < (1 - eps) x offered in the steady-state
    window), to a relative width `tol`. The search starts from [0, min(1, 4 / ser)]: a node
    cannot send more than its four links carry. Runs last `cycles` (default 1000 x ser: about
    the same number of packets per link whatever the packet size, so that queue-length noise
    at the window's ends stays well under eps)."""
    ser = serialisation(packet_bytes, width)
    cycles = 1000 * ser if cycles is None else cycles
    lo, hi = 0.0, min(1.0, 4 / ser)
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        offered, accepted = accepted_throughput(k, mid, packet_bytes, cycles, router_delay, width, seed)
        if accepted < (1 - eps) * offered:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2
