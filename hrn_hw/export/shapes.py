"""Shape propagation through units and the routing graph: which (unit, input map) pairs a
sample can reach, so the hardware's crossbar dispatches to each of them and nothing else."""

from __future__ import annotations

from itertools import permutations

from hrn_hw import layers as layer_kinds
from hrn_hw.export.ir import INPUT_FMT, QuantModel

layer_out_hw = layer_kinds.window_out_hw     # output size of a conv/pool window (one rule)


def unit_out_shape(unit, shape: tuple) -> tuple:
    """(C, H, W) of a unit's output for an input map of `shape` (folded to in_channels first)."""
    c, h, w = unit.in_channels, shape[1], shape[2]
    for layer in unit.layers:
        c, h, w = layer_kinds.of(layer).out_shape(layer, c, h, w)
    return (c, h, w)


def reachable_calls(qm: QuantModel, exact_limit: int = 10) -> list[dict]:
    """Every (unit, source) call a sample can make, with shapes and the input's fraction bits.

    Call k (1-based, k <= d - 1) runs unit u_k on the input (k = 1) or on u_{k-1}'s output; the
    units of a route are distinct initialised units and a call only happens when one more
    initialised unit is left to select. Pools larger than `exact_limit` initialised units use
    the superset "any other initialised unit" (extra entries are harmless).
    """
    init = [u.index for u in qm.units if u.initialised]
    calls: dict[tuple, dict] = {}

    def add(unit: int, source, in_shape: tuple) -> tuple:
        u = qm.units[unit]
        in_frac = INPUT_FMT.frac if source == "input" else qm.units[source].out_fmt.frac
        key = (unit, source, in_shape)
        if key not in calls:
            calls[key] = {"unit": unit, "source": source, "in_shape": list(in_shape), "in_frac": in_frac,
                          "in_width": INPUT_FMT.width + 1 if source == "input" else qm.units[source].out_fmt.width,
                          "out_shape": list(unit_out_shape(u, in_shape))}
        return tuple(calls[key]["out_shape"])

    max_calls = min(qm.d - 1, len(init) - 1)
    if len(init) <= exact_limit:
        for length in range(1, max_calls + 1):
            for seq in permutations(init, length):
                shape, source = tuple(qm.input_shape), "input"
                for unit in seq:
                    shape, source = add(unit, source, shape), unit
    else:
        frontier = {("input", tuple(qm.input_shape))}
        for _ in range(max_calls):
            nxt = set()
            for source, shape in frontier:
                for unit in init:
                    if unit != source:
                        nxt.add((unit, add(unit, source, shape)))
            frontier = nxt
    return sorted(calls.values(), key=lambda c: (c["unit"], str(c["source"]), c["in_shape"]))


def unit_calls(qm: QuantModel, unit: int) -> list[dict]:
    """Unit `unit`'s entries of the reachable calls, in order: a call's id is its position here."""
    return [c for c in qm.reachable if int(c["unit"]) == int(unit)]


def hash_sources(qm: QuantModel) -> list[dict]:
    """Every (hash index, map shape, map format) the hash unit can see."""
    seen = {(0, tuple(qm.input_shape), INPUT_FMT.frac, 8)}
    for call in qm.reachable:
        fmt = qm.units[call["unit"]].out_fmt
        seen.add((call["unit"] + 1, tuple(call["out_shape"]), fmt.frac, fmt.width))
    return [{"hash_index": i, "shape": list(s), "frac": f, "width": w} for i, s, f, w in sorted(seen)]
