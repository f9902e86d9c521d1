"""A workload mapped onto an architecture: the engine's problem plus the names that explain it.

Each architecture builder (`fpga`, `manycore`) returns a `Mapped`; the engine simulates its
`problem`, and `results` turns the outcome into throughput, latency, utilisation and memory
by these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hrn_hw.dataflow.engine import UNBOUNDED, Problem


@dataclass
class Mapped:
    """problem: what the engine runs. servers: a name per server ("hash", "unit1#0",
    "core(2,3)", "link(0,0)>(0,1)"); server_kind: its resource kind ("engine", "core", "link").
    pools: a name per pool. job_labels: per class, a label per job (for the Gantt chart).
    pool_frame_bits: [P] bits of one frame waiting in a pool's FIFO (0: none counted).
    slot_bits: bits of the buffers each sample in flight holds. info: architecture facts for
    the report (knobs, placement, mesh)."""
    problem: Problem
    servers: list
    server_kind: list
    pools: list
    job_labels: list
    pool_frame_bits: np.ndarray
    slot_bits: int = 0
    info: dict = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        return int(self.problem.in_flight)


class PoolTable:
    """Builds the pool and server lists: one pool per named resource, `copies` servers each."""

    def __init__(self):
        self.pools, self.servers, self.kinds, self.server_pool = [], [], [], []
        self.capacity, self.frame_bits = [], []
        self.index = {}

    def add(self, name: str, kind: str, copies: int = 1, capacity: int | None = None, frame_bits: int = 0) -> int:
        """Add pool `name` with `copies` servers (named name#i when more than one); returns its id."""
        if name in self.index:
            return self.index[name]
        pid = len(self.pools)
        self.index[name] = pid
        self.pools.append(name)
        self.capacity.append(UNBOUNDED if capacity is None else int(capacity))
        self.frame_bits.append(int(frame_bits))
        for i in range(copies):
            self.servers.append(name if copies == 1 else f"{name}#{i}")
            self.kinds.append(kind)
            self.server_pool.append(pid)
        return pid

    def __getitem__(self, name: str) -> int:
        return self.index[name]


def build(table: PoolTable, chains: list[list[tuple]], sample_class: np.ndarray, arrival: np.ndarray,
          in_flight: int, trace_samples: int, slot_bits: int = 0, info: dict | None = None) -> Mapped:
    """A Mapped from per-class chains of (label, pool name, delay, duration, lead)."""
    starts = np.cumsum([0] + [len(c) for c in chains])
    jobs = [job for chain in chains for job in chain]
    problem = Problem(
        pool_servers=np.array(table.server_pool, dtype=np.int64),
        pool_capacity=np.array(table.capacity, dtype=np.int64),
        chain_start=starts,
        job_pool=np.array([table[j[1]] for j in jobs], dtype=np.int64),
        job_delay=np.array([j[2] for j in jobs], dtype=np.int64),
        job_duration=np.array([j[3] for j in jobs], dtype=np.int64),
        job_lead=np.array([j[4] for j in jobs], dtype=np.int64),
        sample_class=sample_class, arrival=arrival, in_flight=in_flight,
        trace_samples=min(trace_samples, len(sample_class)))
    return Mapped(problem, list(table.servers), list(table.kinds), list(table.pools),
                  [[j[0] for j in chain] for chain in chains], np.array(table.frame_bits, dtype=np.int64),
                  int(slot_bits), info or {})
