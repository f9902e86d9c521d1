"""The default mapping of the routed dataflow's blocks onto a mesh: io fixed, then every block
and used unit on the next free cells in row-major order (hrn_hw.dataflow.manycore uses it where
an architecture does not place a block; hrn_hw.dataflow.placement starts its search from it)."""

from __future__ import annotations

import itertools

from hrn_hw.dataflow.arch import BLOCKS, Arch
from hrn_hw.dataflow.mesh import cells
from hrn_hw.export.ir import QuantModel


def _ring(arch: Arch) -> list:
    """The mesh's cells in row-major order, starting just after the io cell (wrapping round)."""
    grid = cells(arch["mesh"])
    start = grid.index(tuple(arch["io"])) + 1
    return grid[start:] + grid[:start - 1]


def default_placement(qm: QuantModel, arch: Arch, used_units, copies: dict | None = None) -> dict:
    """The default mapping: io fixed; blocks the architecture places keep their cells; hash,
    normaliser, projection, residue and head, then each used unit, each with its copies
    (`copies` {block: n}, else the architecture's replicas), take the next free cells in
    row-major order after io's. Blocks left without a free cell get an empty list."""
    copies = copies or {}
    place = {"io": [tuple(arch["io"])]}
    place.update({b: [tuple(c) for c in v] for b, v in arch["placement"].items()})
    taken = {c for v in place.values() for c in v}
    free = (c for c in _ring(arch) if c not in taken)
    for block in list(BLOCKS) + [f"unit{u}" for u in used_units if 0 <= u < qm.num_units]:
        if block not in place:
            n = copies.get(block, arch["replicas"].get(block, 1))
            place[block] = list(itertools.islice(free, n))
    return place
