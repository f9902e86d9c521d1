"""Placement of the many-core blocks on the mesh: the default mapping, the traffic the routes
cause, and the optimiser behind `--optimise` (replicate hot units, then cut bytes x hops).

A placement is a dict block -> list of cells, one per copy ("io" included: the architecture's
I/O cell, which never moves); any block may have several copies.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from hrn_hw.dataflow import manycore
from hrn_hw.dataflow.arch import BLOCKS, Arch, ArchError
from hrn_hw.dataflow.default_placement import default_placement
from hrn_hw.dataflow.graph import transition_graph as transitions
from hrn_hw.dataflow.mesh import cells, hops
from hrn_hw.dataflow.workload import Workload
from hrn_hw.export.ir import QuantModel
from hrn_hw.rtl.crossbar import routing_table, state_sequence


# ---- traffic ------------------------------------------------------------------------------

def _class_counts(qm: QuantModel, work: Workload) -> tuple[list, np.ndarray]:
    steps, inverse = manycore.class_steps(qm, work)
    return steps, np.bincount(inverse, minlength=len(steps))


def _mean_per_sample(steps: list, counts: np.ndarray, kind: str, key, value) -> dict:
    """Sum of value(step) over the steps of `kind`, grouped by key(step), per sample."""
    out = {}
    for chain, n in zip(steps, counts):
        for step in chain:
            if step[0] == kind:
                out[key(step)] = out.get(key(step), 0.0) + n * value(step)
    return {k: v / counts.sum() for k, v in out.items()}


def _flows(steps: list, counts: np.ndarray) -> dict:
    flows = _mean_per_sample(steps, counts, "packet", lambda st: (st[1], st[2]), lambda st: st[3])
    return {pair: b for pair, b in flows.items() if pair[0] != pair[1]}


def traffic(qm: QuantModel, work: Workload) -> dict:
    """Mean bytes per sample sent from block a to block b: {(a, b): bytes} (packets of the
    sample chains, manycore's module docstring; "io" is the I/O cell)."""
    return _flows(*_class_counts(qm, work))


def _transition_bytes(qm: QuantModel, units: list, task: int, table) -> list:
    """Bytes of the maps (and the final embedding and logits) moved on the mesh along each of a
    route's transitions input -> u_0 -> ... -> head: the image into the hash core, each map
    from the hash core to the unit that convolves it, each unit's output back to the hash core
    (counted on the transition to the next unit), the embedding and logits on the last."""
    states = state_sequence(table, units)
    out = [0] * (len(units) + 1)
    out[0] += manycore.map_bytes(table.states[0])
    for k in range(len(units) - 1):
        out[k] += manycore.map_bytes(table.states[states[k]])
        out[k + 1] += manycore.map_bytes(table.states[states[k + 1]])
    out[-1] += manycore.vector_bytes(qm)["embedding"] + manycore.logits_bytes(qm, task)
    return out


def transition_graph(qm: QuantModel, work: Workload) -> nx.DiGraph:
    """The unit-transition graph of the routes: nodes "input", "unit<N>", "head"; edge weight:
    samples taking the transition; edge "bytes": mean bytes per such sample moved on the mesh
    between the two nodes' blocks (`_transition_bytes`)."""
    table = routing_table(qm)
    return transitions(work, lambda units, task: _transition_bytes(qm, units, task, table))


def _pair_cost(nbytes: float, cells_a: list, cells_b: list) -> float:
    """bytes x mean hops between the copies of two blocks (round robin spreads a unit's
    traffic evenly over its copies)."""
    return nbytes * sum(hops(a, b) for a in cells_a for b in cells_b) / (len(cells_a) * len(cells_b))


def objective(traffic: dict, placement: dict) -> float:
    """Sum over block pairs of bytes per sample x hops (mean over copies); `placement` names
    every block of `traffic`, "io" included."""
    return sum(_pair_cost(b, placement[x], placement[y]) for (x, y), b in traffic.items())


# ---- optimisation ---------------------------------------------------------------------------

def _load(steps: list, counts: np.ndarray, core: dict) -> dict:
    return _mean_per_sample(steps, counts, "compute", lambda st: st[1],
                            lambda st: manycore.service_cycles(core, st[2], st[3]))


def block_load(qm: QuantModel, work: Workload, arch: Arch) -> dict:
    """Mean core cycles per sample of each block: visits x mean service time."""
    return _load(*_class_counts(qm, work), arch["core"])


def _replicate(copies: dict, load: dict, spare: int, floor: float) -> dict:
    """Add a copy to the block with the largest load per copy while `spare` cores remain and
    that load is above `floor` (what no copy can beat: a pinned block's load, or the interval
    the samples-in-flight limit allows)."""
    copies = dict(copies)
    for _ in range(spare):
        if not copies:
            break
        block = max(sorted(copies), key=lambda b: load.get(b, 0.0) / copies[b])
        if load.get(block, 0.0) / copies[block] <= floor:
            break
        copies[block] += 1
    return copies


def in_flight_floor(load: dict, in_flight: int) -> float:
    """The interval below which copies do not help: a sample's core cycles (a lower bound of
    its latency, its chain being sequential) over the samples in flight."""
    return sum(load.values()) / in_flight


class _Climber:
    """Greedy construction and hill climbing on the objective over the movable copies."""

    def __init__(self, traffic: dict, place: dict, movable: list, free: list):
        self.traffic, self.place = traffic, {b: list(v) for b, v in place.items()}
        self.slots = [(b, i) for b in movable for i in range(len(place[b]))]
        self.cells = free                                  # cells the movable copies may take
        self.touching = {b: [p for p in traffic if b in p] for b in place}

    def cost(self, blocks) -> float:
        """Objective terms of the pairs that touch any of `blocks`."""
        pairs = {p for b in blocks for p in self.touching.get(b, [])}
        return sum(_pair_cost(self.traffic[p], self.place[p[0]], self.place[p[1]]) for p in pairs)

    def greedy(self) -> dict:
        """Place the copies one by one, busiest block first, each on the free cell that costs
        least against the copies already placed."""
        volume = {b: sum(self.traffic[p] for p in self.touching.get(b, [])) for b, _ in self.slots}
        order = sorted(self.slots, key=lambda s: (-volume[s[0]], s))
        for block, _ in self.slots:
            self.place[block] = []
        taken = set()
        for block, _ in order:
            placed = {x: v for x, v in self.place.items() if v}
            best = min((c for c in self.cells if c not in taken),
                       key=lambda c: self._cost_with(placed, block, c))
            self.place[block].append(best)
            taken.add(best)
        return self.place

    def _cost_with(self, placed: dict, block: str, cell) -> float:
        trial = placed.get(block, []) + [cell]
        total = 0.0
        for (x, y) in self.touching.get(block, []):
            other = y if x == block else x
            if other in placed:
                cx = trial if x == block else placed[x]
                cy = trial if y == block else placed[y]
                total += _pair_cost(self.traffic[(x, y)], cx, cy)
        return total

    def _try(self, change, blocks) -> bool:
        """Apply `change` (a function that edits self.place and returns its undo); keep it only
        when the objective drops."""
        before = self.cost(blocks)
        undo = change()
        if self.cost(blocks) < before - 1e-9:
            return True
        undo()
        return False

    def _move(self, slot, cell):
        block, i = slot
        old = self.place[block][i]
        self.place[block][i] = cell
        return lambda: self.place[block].__setitem__(i, old)

    def _swap(self, s, t):
        (a, i), (b, j) = s, t
        self.place[a][i], self.place[b][j] = self.place[b][j], self.place[a][i]
        return lambda: self._swap(s, t)

    def climb(self, rounds: int = 50) -> dict:
        """Moves of a copy to a free cell and swaps of two copies, in a fixed order, while
        either improves the objective (at most `rounds` passes)."""
        for _ in range(rounds):
            improved = False
            for k, slot in enumerate(self.slots):
                taken = {c for b, _ in self.slots for c in self.place[b]}
                for cell in self.cells:
                    if cell not in taken and self._try(lambda: self._move(slot, cell), [slot[0]]):
                        taken = {c for b, _ in self.slots for c in self.place[b]}
                        improved = True
                for other in self.slots[k + 1:]:
                    if other[0] != slot[0]:
                        improved |= self._try(lambda: self._swap(slot, other), [slot[0], other[0]])
            if not improved:
                break
        return self.place


def optimise(qm: QuantModel, work: Workload, arch: Arch, core_budget: int | None = None) -> tuple[dict, dict]:
    """(placement, report): hot blocks replicated within `core_budget` cores (default: every
    core but io's) until the busiest copy is no busier than a pinned block or than the
    samples-in-flight limit allows, then every block the architecture does not place put where it cuts bytes x
    hops (greedy, then hill climbing from the better of greedy and the default mapping; no
    randomness). The report holds the objective of the default mapping, of the default mapping
    with the chosen copies ("before") and of the result ("after"), the copies per unit and the
    cores used. The gain that counts is the simulated one: simulate both placements."""
    steps, counts = _class_counts(qm, work)
    used = manycore.used_units(steps)
    pinned = set(arch["placement"]) | {"io"}
    rows, cols = arch["mesh"]
    budget = rows * cols - 1 if core_budget is None else min(core_budget, rows * cols - 1)
    fixed_cells = {tuple(c) for b in arch["placement"] for c in arch["placement"][b]} - {tuple(arch["io"])}
    movable = [b for b in list(BLOCKS) + [f"unit{u}" for u in used] if b not in pinned]
    copies = {b: arch["replicas"].get(b, 1) for b in movable}
    spare = budget - len(fixed_cells) - sum(copies.values())
    if spare < 0:
        raise ArchError(f"core budget {budget}: the blocks need {budget - spare} cores "
                        f"on the {rows} x {cols} mesh (io at {list(arch['io'])} not counted)")
    load = _load(steps, counts, arch["core"])
    floor = max([in_flight_floor(load, arch["in_flight"])]
                + [load.get(b, 0.0) / len(arch["placement"][b]) for b in pinned if b != "io"])
    copies = _replicate(copies, load, spare, floor)
    flows = _flows(steps, counts)
    default = manycore.resolve_placement(qm, arch, used)
    start = default_placement(qm, arch, used, copies)
    free = [c for c in cells(arch["mesh"]) if c != tuple(arch["io"]) and c not in fixed_cells]
    climber = _Climber(flows, start, movable, free)
    greedy = climber.greedy()
    if objective(flows, greedy) > objective(flows, start):
        climber.place = {b: list(v) for b, v in start.items()}
    result = climber.climb()
    report = {"objective_default": objective(flows, default), "objective_before": objective(flows, start),
              "objective_after": objective(flows, result),
              "copies": {b: len(v) for b, v in result.items() if b != "io"},
              "cores_used": len({c for b, v in result.items() if b != "io" for c in v}), "core_budget": budget}
    return {b: [tuple(c) for c in v] for b, v in result.items()}, report
