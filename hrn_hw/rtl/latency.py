"""Cycle model of one sample through the top level (`hrn_hw.rtl.top.HrnTop`), from its route.

Built from the blocks' own formulas (`hrn_hw.rtl.cycles`) and the top level's hand-offs; the
top-level testbench requires it to equal the measured cycles of every compared sample. A
sample's latency counts from its first pixel handshake to its last logit handshake, both
included, with the input never idle and the outputs never stalled. With L selected units:

    n0                                    pixel beats in (hashed as they arrive)
    + L route steps, each: (H - n0 - S) + (N - S) + P   hash tail, normaliser, projection (chained)
      (L = 0: one step that finds no unit)
    + L residues, each: R + 1             h replay from the h buffer (+1 read latency)
    + L - 1 conv calls, each: C + 1       map buffer -> engine (+1 read latency); the engine's
                                          output is hashed as it leaves, so the next step starts
                                          at its last word
    + 2 + head cycles                     finish handshake and the embedding memory's read
                                          latency, then the head (its formula counts from its
                                          first embedding word)

with H, N, P, R, C the hash-unit, normaliser, projection, residue and conv-engine formulas at
the knobs' words per beat W, n0 = ceil(pixels / W) and S = ceil(s / W) (at W = 1, H - n0 - S = 9).
"""

from __future__ import annotations

import numpy as np

from hrn_hw.export.shapes import unit_calls
from hrn_hw.rtl.conv_engine import conv_engine_cycles
from hrn_hw.rtl.crossbar import routing_table
from hrn_hw.rtl.cycles import hash_unit_cycles, normaliser_cycles, projection_cycles, residue_cycles
from hrn_hw.rtl.head import head_cycles, head_layers
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.residue import EMB_STAGES
from hrn_hw.rtl.rows import beats

READ_LATENCY = 1        # a buffer's synchronous read before its first word
DISPATCH = 1            # pipelined top level: the cycle an engine registers the job it takes
HANDOFF = 1             # pipelined top level: the cycle a done job's hand-off (and the engine's release) is registered


def route_step_cycles(qm, knobs: RtlKnobs) -> int:
    """One route step of the top level after its map's last beat entered the hash unit: the
    hash unit's tail, the normaliser after its input, the projection comparator (chained)."""
    s, W = int(qm.s), knobs.words
    n0 = int(np.prod(qm.input_shape))
    return (hash_unit_cycles(n0, s, words=W) - beats(n0, W) - beats(s, W)) \
        + (normaliser_cycles(s, int(qm.norm_k), words=W, root_bits=knobs.root_bits) - beats(s, W)) \
        + projection_cycles(s, qm.num_units, words=W)


def conv_call_cycles(qm, unit: int, call_id: int, knobs: RtlKnobs) -> int:
    """Conv engine cycles of unit `unit`'s reachable call `call_id` at the knobs."""
    u = qm.units[unit]
    return conv_engine_cycles(u, unit_calls(qm, unit)[call_id], knobs.lanes_of(u), words=knobs.words,
                              pixel_lanes=knobs.pixel_lanes)


def head_run_cycles(qm, task: int, knobs: RtlKnobs) -> int:
    """Head engine cycles of task `task`'s head at the knobs (from its first embedding word)."""
    sizes = [(l["n_in"], l["n_out"]) for l in head_layers([qm.heads[task]])[0]]
    return head_cycles(int(qm.s), sizes, qm.max_classes, knobs.head_lanes, words=knobs.words)


def route_steps(table, route):
    """Per route step of a sample: (unit, call), unit the selected unit (None: the step found
    none and the sample stops), call (call id, map state after it) when the unit runs on the
    map, None for the last selected unit (it contributes its basis only)."""
    units = [int(u) for u in route if int(u) >= 0]
    if not units:
        yield None, None
    state = 0
    for k, unit in enumerate(units):
        call = None
        if k < len(units) - 1:
            call = table.call(state, unit)
            state = call[1]
        yield unit, call


def sample_ops(qm, route, task: int = 0, knobs: RtlKnobs | dict | None = None, table=None) -> list[tuple]:
    """The top level's schedule of one sample, in order: (phase, block, cycles) per step, where
    block is the engine that works ("hash", "route", "residue", "unit<u>", "head"). The phases'
    sum is the sample's latency; `sample_phases` and the dataflow simulator's `rtl`
    architecture both read this list."""
    knobs = knobs if isinstance(knobs, RtlKnobs) else RtlKnobs.from_dict(knobs)
    table = table or routing_table(qm)
    s, W = int(qm.s), knobs.words
    ops = [("input", "hash", beats(table.states[0].size, W))]
    route_step = route_step_cycles(qm, knobs)
    residue = residue_cycles(s, words=W) + READ_LATENCY
    for unit, call in route_steps(table, route):
        ops.append(("route", "route", route_step))
        if unit is None:
            break
        ops.append(("residue", "residue", residue))
        if call is not None:
            ops.append(("conv", f"unit{unit}", conv_call_cycles(qm, unit, call[0], knobs) + READ_LATENCY))
    ops.append(("finish", "residue", 1 + READ_LATENCY))
    ops.append(("head", "head", head_run_cycles(qm, task, knobs)))
    return ops


PHASES = ("input", "route", "residue", "conv", "finish", "head")


def sample_phases(qm, route, task: int = 0, knobs: RtlKnobs | dict | None = None, table=None) -> dict:
    """Cycles per phase of one sample with `route` (selected units per step, -1 when none)."""
    phases = dict.fromkeys(PHASES, 0)
    for phase, _, cycles in sample_ops(qm, route, task, knobs, table):
        phases[phase] += cycles
    return phases


def sample_cycles(qm, routes, knobs: RtlKnobs | dict | None = None, tasks=None) -> np.ndarray:
    """Predicted cycles per sample [N] for routes [N, d] (golden.run's `routes`) and task ids
    [N] (all 0 when None; every task's head gives the same count when the heads have the same
    layer sizes, as in the bundled scenarios)."""
    routes = np.asarray(routes)
    tasks = np.zeros(len(routes), dtype=np.int64) if tasks is None else np.asarray(tasks)
    if len(tasks) != len(routes):
        raise ValueError("one task id per route")
    table = routing_table(qm)
    return np.array([sum(sample_phases(qm, r, int(t), knobs, table).values()) for r, t in zip(routes, tasks)],
                    dtype=np.int64)


def pipelined_ops(qm, route, task: int = 0, knobs: RtlKnobs | dict | None = None, table=None) -> list[tuple]:
    """One sample's jobs on the engines of the pipelined top level (`hrn_hw.rtl.pipelined`), in
    order: (phase, engine, cycles), engine one of "input", "hash", "normaliser", "projection",
    "residue", "unit<u>", "head".

    Store-and-forward: an engine takes a job (the sample's slot) from the queue before it in the
    cycle it is free (DISPATCH: the job's slot registered), reads its whole frame from the
    sample's own buffers (READ_LATENCY before the first word) and runs its block's formula on it,
    so a job's cycles do not depend on what the other samples do. After its last output the
    job's hand-off and the engine's release pass a register (HANDOFF). The input
    engine is a hash unit on the input port (the image hashed as it arrives and written into
    the sample's map buffer); the head reads the embedding through the residue block's read-out
    (EMB_STAGES)."""
    knobs = knobs if isinstance(knobs, RtlKnobs) else RtlKnobs.from_dict(knobs)
    table = table or routing_table(qm)
    s, W, M = int(qm.s), knobs.words, qm.num_units
    fetch = DISPATCH + READ_LATENCY + HANDOFF         # every job: dispatch, first read, hand-off
    ops = [("input", "input", DISPATCH + HANDOFF + hash_unit_cycles(table.states[0].size, s, words=W))]
    normalise = fetch + normaliser_cycles(s, int(qm.norm_k), words=W, root_bits=knobs.root_bits)
    project = fetch + projection_cycles(s, M, words=W)
    residue = fetch + residue_cycles(s, words=W)
    for unit, call in route_steps(table, route):
        ops += [("route", "normaliser", normalise), ("route", "projection", project)]
        if unit is None:
            break
        ops.append(("residue", "residue", residue))
        if call is not None:
            call_id, state = call
            ops.append(("conv", f"unit{unit}", fetch + conv_call_cycles(qm, unit, call_id, knobs)))
            ops.append(("route", "hash", fetch + hash_unit_cycles(table.states[state].size, s, words=W)))
    ops.append(("head", "head", DISPATCH + EMB_STAGES + HANDOFF + head_run_cycles(qm, task, knobs)))
    return ops


AUTO_SLACK = 1.1        # auto replicas: an engine is copied while its load exceeds 1.1 x the bound


def auto_replicas(qm, routes, tasks, knobs: RtlKnobs) -> dict:
    """Replicas for the pipelined top level chosen from a workload (routes [N, d], tasks [N]):
    the engines that cannot be copied (the input port's hash unit, the residue block, the head)
    bound the interval at their largest mean cycles per sample B; every other engine gets
    ceil(load / (AUTO_SLACK x B)) copies, load its mean cycles per sample (docs/rtl.md
    "Samples in flight")."""
    table = routing_table(qm)
    load = {}
    for route, task in zip(np.asarray(routes), np.asarray(tasks)):
        for _, engine, cycles in pipelined_ops(qm, route, int(task), knobs.with_(replicas={}), table):
            load[engine] = load.get(engine, 0) + cycles
    n = max(1, len(routes))
    bound = max(load.get(e, 0) for e in ("input", "residue", "head")) / n
    out = {}
    for engine, total in sorted(load.items()):
        if engine in ("input", "residue", "head") or bound <= 0:
            continue
        copies = int(np.ceil(total / n / (AUTO_SLACK * bound)))
        if copies > 1:
            out[engine] = copies
    return out


def resolve_knobs(qm, knobs: RtlKnobs, routes, tasks) -> RtlKnobs:
    """`knobs` with replicas "auto" chosen from the workload (none when in_flight is 1)."""
    if knobs.replicas != "auto":
        return knobs
    if not knobs.pipelined:
        return knobs.with_(replicas={})
    return knobs.with_(replicas=auto_replicas(qm, routes, tasks, knobs))
