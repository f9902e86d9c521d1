"""The unit-pool crossbar's routing table: which conv-engine call a (map, unit) pair makes.

A sample's current feature map is one of a few *map states*: the input image (state 0), or
the output of unit u on a given input shape. Selecting unit u in state q runs u's engine with
call id `calls[(q, u)]` (the position of that call in u's entries of the manifest's
`reachable` list, as `hrn_hw.rtl.conv_engine.conv_engine_params` orders them) and moves the
sample to state `next_state[(q, u)]`. The top level holds this table as constants; the cycle
model reads the same table, so both see the same map sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hrn_hw.export.ir import INPUT_FMT
from hrn_hw.export.shapes import unit_calls


@dataclass(frozen=True)
class MapState:
    """One kind of feature map: who produced it, its shape, its raw integer format."""
    source: object          # "input" or the producing unit's index
    shape: tuple            # (C, H, W)
    width: int              # raw integer width (pixels: 8, unsigned)
    signed: bool
    hash_index: int         # which hash function hashes it: 0 for the input, u + 1 for unit u

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class RoutingTable:
    states: tuple                   # MapState per state id; 0 is the input image
    transitions: dict               # (state, unit) -> (call_id, next_state)

    def call(self, state: int, unit: int) -> tuple[int, int]:
        """(call id, next state) of selecting `unit` in `state`."""
        return self.transitions[(state, unit)]


def routing_table(qm) -> RoutingTable:
    """The crossbar table of a QuantModel, from its `reachable` calls."""
    states = [MapState("input", tuple(int(v) for v in qm.input_shape), INPUT_FMT.width, False, 0)]
    index = {("input", states[0].shape): 0}

    def state_of(source, shape) -> int:
        key = (source, tuple(int(v) for v in shape))
        if key not in index:
            fmt = qm.units[source].out_fmt
            index[key] = len(states)
            states.append(MapState(source, key[1], fmt.width, fmt.signed, source + 1))
        return index[key]

    transitions = {}
    for unit in range(qm.num_units):
        for call_id, call in enumerate(unit_calls(qm, unit)):
            src = call["source"]
            src_state = state_of("input" if src == "input" else int(src), call["in_shape"])
            transitions[(src_state, unit)] = (call_id, state_of(unit, call["out_shape"]))
    return RoutingTable(tuple(states), transitions)


def state_sequence(table: RoutingTable, route) -> list[int]:
    """Map states a route visits: state 0, then one per conv call of the route (every selected
    unit but the last), following the table."""
    units = [int(u) for u in route if int(u) >= 0]
    states = [0]
    for unit in units[:-1]:
        states.append(table.call(states[-1], unit)[1])
    return states
