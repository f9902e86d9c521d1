"""The discrete-event engine: samples whose chains of jobs queue for pools of servers.

This module is the specification (a heap-based engine in plain Python); `hrn_hw.dataflow.native`
holds its compiled twin, which follows the same rules step by step and gives the same integers
(tests compare every output on random problems). docs/dataflow.md "Event engine" states the
rules; in short:

- Time is integer cycles. A *server* serves one job at a time, without preemption. Servers
  are grouped in *pools*; each pool has one FIFO queue, optionally bounded (`capacity`: samples
  waiting, not counting those in service).
- A sample follows the job chain of its *class*. Job j names a pool, a `delay` (cycles between
  the hand-off and the entry into the pool's queue: a router's delay), a `duration` (cycles the
  server works) and a `lead` (cycles after its start at which the sample is handed to job
  j + 1: `lead == duration` is store-and-forward, a smaller lead is cut-through).
- A hand-off into a full queue blocks: the sample waits (FIFO per pool) and keeps its server,
  which is released only once its service is over and the sample has moved on. A pool reached
  with a delay must be unbounded.
- At most `in_flight` samples are in the system (0: no limit); samples are admitted in index
  order, not before their arrival, when their first pool's queue has room. A sample's latency
  runs from its admission to the end of its last job.
- Ties: events at one time are handled in the order (kind: service end, hand-off, entry,
  arrival; sample; job); then the *settle* step starts queued jobs, pool by pool in index
  order, each on the lowest-index idle server, unblocks waiting samples as queue room appears,
  and admits samples, until nothing changes.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np

END, HANDOFF, ENTRY, ARRIVAL = range(4)
UNBOUNDED = -1
TRACE_COLUMNS = ("sample", "job", "server", "start", "end", "release")


class DeadlockError(RuntimeError):
    """The simulated system stopped with samples in flight (bounded queues full in a cycle);
    `pools` are the ids of the pools whose queues blocked samples wait for."""

    def __init__(self, message: str, pools=()):
        super().__init__(message)
        self.pools = list(pools)


def deadlock_error(samples: int, finished: int, cycle: int, pools: list) -> DeadlockError:
    """The error of a run that stopped at `cycle` with `finished` of `samples` done while
    samples wait for room in the queues of `pools`."""
    return DeadlockError(f"{samples - finished} of {samples} samples never finished (cycle {cycle}): they wait "
                         f"for room in the queues of pools {pools}; the queue bounds are too small for the "
                         "samples in flight", pools)


@dataclass
class Problem:
    """What the engine simulates. Arrays are int64 numpy arrays.

    pool_servers: [S] the pool of each server (servers of a pool: ascending indices).
    pool_capacity: [P] queue bound per pool, UNBOUNDED (-1) for none.
    chain_start: [C + 1] offsets of each class's jobs in the job arrays.
    job_pool, job_delay, job_duration, job_lead: [J].
    sample_class, arrival: [N]; arrival cycles non-decreasing (0: at once).
    in_flight: samples admitted at once at most (0: unbounded).
    trace_samples: samples 0 .. trace_samples - 1 get every job in `Outcome.trace`.
    """
    pool_servers: np.ndarray
    pool_capacity: np.ndarray
    chain_start: np.ndarray
    job_pool: np.ndarray
    job_delay: np.ndarray
    job_duration: np.ndarray
    job_lead: np.ndarray
    sample_class: np.ndarray
    arrival: np.ndarray
    in_flight: int = 0
    trace_samples: int = 0

    def __post_init__(self):
        for name in ("pool_servers", "pool_capacity", "chain_start", "job_pool", "job_delay", "job_duration",
                     "job_lead", "sample_class", "arrival"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.int64))
        self.check()

    @property
    def num_pools(self) -> int:
        return len(self.pool_capacity)

    @property
    def num_servers(self) -> int:
        return len(self.pool_servers)

    @property
    def num_samples(self) -> int:
        return len(self.sample_class)

    def check(self) -> None:
        """Raise ValueError when the problem breaks the engine's assumptions."""
        P, C = self.num_pools, len(self.chain_start) - 1
        if P < 1 or C < 1:
            raise ValueError("a problem needs at least one pool and one job class")
        if ((self.pool_servers < 0) | (self.pool_servers >= P)).any() or np.diff(self.pool_servers).min(initial=0) < 0:
            raise ValueError("pool_servers must be pool ids in ascending order")
        if np.bincount(self.pool_servers, minlength=P).min() < 1:
            raise ValueError("every pool needs at least one server")
        if ((self.pool_capacity < 1) & (self.pool_capacity != UNBOUNDED)).any():
            raise ValueError("a pool's capacity is >= 1 or UNBOUNDED")
        starts = self.chain_start
        if starts[0] != 0 or starts[-1] != len(self.job_pool) or (np.diff(starts) < 1).any():
            raise ValueError("chain_start must be offsets of non-empty chains")
        if not (len(self.job_pool) == len(self.job_delay) == len(self.job_duration) == len(self.job_lead)):
            raise ValueError("job arrays differ in length")
        if ((self.job_pool < 0) | (self.job_pool >= P)).any():
            raise ValueError("a job names an unknown pool")
        if (self.job_duration < 1).any() or (self.job_delay < 0).any():
            raise ValueError("job durations must be >= 1 and delays >= 0")
        if ((self.job_lead < 0) | (self.job_lead > self.job_duration)).any():
            raise ValueError("a job's lead lies in [0, duration]")
        if (self.pool_capacity[self.job_pool[self.job_delay > 0]] != UNBOUNDED).any():
            raise ValueError("a pool reached with a delay must be unbounded")
        if len(self.arrival) != len(self.sample_class):
            raise ValueError("one arrival per sample")
        if ((self.sample_class < 0) | (self.sample_class >= C)).any():
            raise ValueError("a sample names an unknown class")
        if (self.arrival < 0).any() or (np.diff(self.arrival) < 0).any():
            raise ValueError("arrivals must be >= 0 and non-decreasing")
        if self.in_flight < 0 or self.trace_samples < 0:
            raise ValueError("in_flight and trace_samples must be >= 0")


@dataclass
class Outcome:
    """What the engine measured.

    admit, done: [N] cycles (latency = done - admit). busy: [S] cycles each server worked;
    blocked: [S] cycles it held a finished job whose sample could not move on. max_queue: [P]
    the most samples waiting in each pool's queue at once. inflight_area: the integral over
    time of the number of admitted, unfinished samples. trace: [T, 6] (TRACE_COLUMNS) for the
    traced samples' jobs in start order.
    """
    admit: np.ndarray
    done: np.ndarray
    busy: np.ndarray
    blocked: np.ndarray
    max_queue: np.ndarray
    inflight_area: int
    trace: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), dtype=np.int64))

    def same_as(self, other: "Outcome") -> bool:
        """Every array and count equal (the twins' contract)."""
        return all(np.array_equal(getattr(self, k), getattr(other, k))
                   for k in ("admit", "done", "busy", "blocked", "max_queue", "trace")) \
            and int(self.inflight_area) == int(other.inflight_area)


def simulate(problem: Problem) -> Outcome:
    """Run `problem` to the end with the Python engine (the specification)."""
    return _Run(problem).run()


class _Run:
    """One run of the Python engine (state as plain lists, for speed)."""

    def __init__(self, pb: Problem):
        self.pb = pb
        P, S, N = pb.num_pools, pb.num_servers, pb.num_samples
        self.servers = [[] for _ in range(P)]
        for s, p in enumerate(pb.pool_servers.tolist()):
            self.servers[p].append(s)
        self.capacity = pb.pool_capacity.tolist()
        self.chain_start = pb.chain_start.tolist()
        self.jpool, self.jdelay = pb.job_pool.tolist(), pb.job_delay.tolist()
        self.jdur, self.jlead = pb.job_duration.tolist(), pb.job_lead.tolist()
        self.cls, self.arrival = pb.sample_class.tolist(), pb.arrival.tolist()
        self.queue = [deque() for _ in range(P)]           # (sample, job) waiting for a server
        self.waiting = [deque() for _ in range(P)]         # (sample, job, server): blocked hand-offs
        self.idle = [True] * S
        self.serving_done = [False] * S                    # the server's current service is over
        self.moved = [False] * S                           # its sample has been handed on
        self.current = [(-1, -1)] * S                      # (sample, job) a server holds
        self.server_of = {}                                # (sample, job) -> server, until released
        self.free_at = [0] * S                             # end of the current service
        self.trace_row = [-1] * S
        self.heap = []
        self.admit = np.zeros(N, dtype=np.int64)
        self.done = np.zeros(N, dtype=np.int64)
        self.busy = [0] * S
        self.blocked = [0] * S
        self.max_queue = [0] * P
        self.trace = []
        self.next_sample = self.inflight = self.finished = 0
        self.area = self.now = 0

    def _first_job(self, sample: int) -> int:
        return self.chain_start[self.cls[sample]]

    def _last_job(self, sample: int) -> int:
        return self.chain_start[self.cls[sample] + 1] - 1

    def _room(self, p: int) -> bool:
        cap = self.capacity[p]
        return cap == UNBOUNDED or len(self.queue[p]) < cap

    def _enqueue(self, p: int, sample: int, job: int) -> None:
        q = self.queue[p]
        q.append((sample, job))
        if len(q) > self.max_queue[p]:
            self.max_queue[p] = len(q)

    def _release(self, server: int) -> None:
        self.blocked[server] += self.now - self.free_at[server]
        self.idle[server] = True
        del self.server_of[self.current[server]]
        if self.trace_row[server] >= 0:
            self.trace[self.trace_row[server]][5] = self.now
            self.trace_row[server] = -1

    def _moved_on(self, server: int) -> None:
        """The sample of `server` left it: release the server once its service is over."""
        self.moved[server] = True
        if self.serving_done[server]:
            self._release(server)

    def _hand_to(self, sample: int, job: int, server: int) -> None:
        """Move `sample` to job `job` (its previous job ran on `server`, or -1 on admission);
        it waits, holding `server`, while the job's queue is full."""
        p, delay = self.jpool[job], self.jdelay[job]
        if delay > 0:
            heapq.heappush(self.heap, (self.now + delay, ENTRY, sample, job))
        elif self._room(p):
            self._enqueue(p, sample, job)
        else:
            self.waiting[p].append((sample, job, server))
            return
        if server >= 0:
            self._moved_on(server)

    def _end(self, sample: int, job: int) -> None:
        server = self.server_of[(sample, job)]
        self.serving_done[server] = True
        if job == self._last_job(sample):
            self.done[sample] = self.now
            self.inflight -= 1
            self.finished += 1
            self._moved_on(server)
        elif self.moved[server]:
            self._release(server)

    def _start(self, p: int) -> None:
        sample, job = self.queue[p].popleft()
        server = next(s for s in self.servers[p] if self.idle[s])
        t, dur = self.now, self.jdur[job]
        self.idle[server] = self.serving_done[server] = self.moved[server] = False
        self.current[server] = (sample, job)
        self.server_of[(sample, job)] = server
        self.free_at[server] = t + dur
        self.busy[server] += dur
        if sample < self.pb.trace_samples:
            self.trace_row[server] = len(self.trace)
            self.trace.append([sample, job - self._first_job(sample), server, t, t + dur, -1])
        heapq.heappush(self.heap, (t + dur, END, sample, job))
        if job != self._last_job(sample):
            heapq.heappush(self.heap, (t + self.jlead[job], HANDOFF, sample, job))
        if self.waiting[p] and self._room(p):
            w_sample, w_job, w_server = self.waiting[p].popleft()
            self._enqueue(p, w_sample, w_job)
            self._moved_on(w_server)

    def _admit(self) -> bool:
        """Admit the next sample if it has arrived, a slot is free and its first queue has room."""
        pb, i = self.pb, self.next_sample
        if i >= pb.num_samples or self.arrival[i] > self.now or (pb.in_flight and self.inflight >= pb.in_flight):
            return False
        first = self._first_job(i)
        if self.jdelay[first] == 0 and not self._room(self.jpool[first]):
            return False
        self.next_sample += 1
        self.inflight += 1
        self.admit[i] = self.now
        self._hand_to(i, first, -1)
        return True

    def _settle(self) -> None:
        changed = True
        while changed:
            changed = False
            for p in range(self.pb.num_pools):
                while self.queue[p] and any(self.idle[s] for s in self.servers[p]):
                    self._start(p)
                    changed = True
            while self._admit():
                changed = True

    def run(self) -> Outcome:
        pb, N = self.pb, self.pb.num_samples
        last = 0
        for i, a in enumerate(self.arrival):
            if a > last:
                heapq.heappush(self.heap, (a, ARRIVAL, i, 0))
                last = a
        self._settle()
        while self.heap:
            t = self.heap[0][0]
            self.area += self.inflight * (t - self.now)
            self.now = t
            while self.heap and self.heap[0][0] == t:
                _, kind, sample, job = heapq.heappop(self.heap)
                if kind == END:
                    self._end(sample, job)
                elif kind == HANDOFF:
                    self._hand_to(sample, job + 1, self.server_of[(sample, job)])
                elif kind == ENTRY:
                    self._enqueue(self.jpool[job], sample, job)
            self._settle()
        if self.finished != N:
            raise deadlock_error(N, self.finished, self.now, [p for p in range(pb.num_pools) if self.waiting[p]])
        trace = np.array(self.trace, dtype=np.int64).reshape(-1, 6)
        return Outcome(self.admit, self.done, np.array(self.busy, dtype=np.int64),
                       np.array(self.blocked, dtype=np.int64), np.array(self.max_queue, dtype=np.int64),
                       int(self.area), trace)
