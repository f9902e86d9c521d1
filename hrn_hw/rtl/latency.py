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
from hrn_hw.rtl.rows import beats

READ_LATENCY = 1        # a buffer's synchronous read before its first word


def sample_phases(qm, route, task: int = 0, knobs: RtlKnobs | dict | None = None, table=None) -> dict:
    """Cycles per phase of one sample with `route` (selected units per step, -1 when none)."""
    knobs = knobs if isinstance(knobs, RtlKnobs) else RtlKnobs.from_dict(knobs)
    table = table or routing_table(qm)
    s, n0, W = int(qm.s), table.states[0].size, knobs.words
    units = [int(u) for u in route if int(u) >= 0]
    route_step = (hash_unit_cycles(n0, s, words=W) - beats(n0, W) - beats(s, W)) \
        + (normaliser_cycles(s, int(qm.norm_k), words=W, root_bits=knobs.root_bits) - beats(s, W)) \
        + projection_cycles(s, qm.num_units, words=W)
    conv, state = 0, 0
    for unit in units[:-1]:
        call_id, nxt = table.call(state, unit)
        call = unit_calls(qm, unit)[call_id]
        conv += conv_engine_cycles(qm.units[unit], call, knobs.lanes_of(qm.units[unit]), words=W,
                                   pixel_lanes=knobs.pixel_lanes) + READ_LATENCY
        state = nxt
    return {
        "input": beats(n0, W),
        "route": route_step * max(1, len(units)),
        "residue": (residue_cycles(s, words=W) + READ_LATENCY) * len(units),
        "conv": conv,
        "finish": 1 + READ_LATENCY,
        "head": head_cycles(s, [(l["n_in"], l["n_out"]) for l in head_layers([qm.heads[task]])[0]],
                            qm.max_classes, knobs.head_lanes, words=W),
    }


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
