"""The `manycore` architecture: the routed HRN on an R x C mesh of cores (docs/dataflow.md).

Design:

- Resources. Each core is one pool of one server, `core(r,c)` (kind "core"); blocks placed on
  the same core share it, one job at a time. Each directed link is a pool of one server
  (`hrn_hw.dataflow.mesh`): packets take XY routes, one job per hop, and serialise on shared
  links. Every core and link of the mesh is a pool, used or not, so utilisation covers the chip.
- Blocks: "hash", "normaliser", "projection", "residue", "head" (one core each) and "unit<N>"
  (one core per copy). Images enter and logits leave at the `io` cell. Where the architecture
  (or the `placement` argument) does not place a block, `default_placement.default_placement` does.
- Service times from operation counts for the sample's actual shapes: a job on a core takes
  task_overhead + ceil(macs / macs_per_cycle) + ceil(ops / ops_per_cycle) cycles (at least 1),
  store-and-forward (lead = duration). Counts (s hash buckets, m basis vectors, M units, K =
  norm_k): hash of an n-element map: n + s ops; normaliser: 2s MACs (squares, scaling), (2K+1) +
  (K+1) ops (bit-serial division and root); projection: (initialised units) x m x s MACs, M
  compares; residue: m x s + s MACs, 2s ops; a unit call: out_c x out_h x out_w x in_c x k^2
  MACs per conv layer, C x H x W ops to fold a C-channel map into in_channels (when C differs),
  one op per activation element, out elements x k^2 ops per maxpool; head: sum n_in x n_out
  MACs, sum n_out ops.
- Per sample, one chain (the top level's step structure, `hrn_hw.rtl.latency.sample_ops`):
  image io -> hash (1 byte a pixel); then per step: hash; phi hash -> normaliser (4 bytes a
  bucket); normalise; h -> projection; project; h, m coefficients and the unit id ->
  residue; residue. If the sample goes on (every selected unit but the last runs its conv): a
  decision (4 bytes) residue -> hash, the current map (kept by the hash core) hash -> the unit's
  core, conv, the output map unit -> hash, and the next step hashes it. At the end the embedding
  residue -> head, head, logits head -> io. A step that finds no unit (a route with no unit)
  ends after its projection: a decision projection -> residue, then the (empty) embedding
  residue -> head. Map elements take ceil(width / 8) bytes of their format; vectors likewise.
- Replicas: any block may have r copies on r cores (`replicas`, or the cells of `placement`);
  the k-th sample (in sample order) whose route uses the block takes copy k mod r (static round
  robin) for all its visits, so the hash copy that keeps a sample's map and the residue copy
  that accumulates its embedding stay the same through the sample. The Mapped's classes are
  the distinct (route class, copy choices), found with numpy.
- SRAM per core: what its blocks keep (a unit's conv weights and biases; the projection's
  and the residue's copy of all bases M x m x s; the residue's embedding accumulator per
  sample in flight; all heads' weights and biases; the hash core's map buffer: in_flight x the
  largest map) plus the working frames of its largest job (input + output frame, over every
  reachable call) must fit `sram_bytes`, else ArchError.
"""

from __future__ import annotations

import math

import numpy as np

from hrn_hw import layers as layer_kinds
from hrn_hw.dataflow import mesh
from hrn_hw.dataflow.default_placement import default_placement
from hrn_hw.dataflow.arch import BLOCKS, Arch, ArchError
from hrn_hw.dataflow.mapped import Mapped, PoolTable, build
from hrn_hw.dataflow.workload import Workload
from hrn_hw.export.ir import QuantModel
from hrn_hw.rtl.crossbar import routing_table

ROUTER_BLOCKS = BLOCKS          # one core each; units ("unit<N>") may have copies
DECISION_BYTES = 4
OPS_NOTE = ("each job on a core takes task_overhead + ceil(MACs / macs_per_cycle) + ceil(ops / ops_per_cycle) "
            "cycles for the operation counts of the sample's actual shapes, and each packet hop "
            "router_delay + ceil(bytes / link_bytes_per_cycle) cycles on its link (XY routing).")


# ---- operation counts (MACs, element operations) ------------------------------------------

def hash_work(qm: QuantModel, n: int) -> tuple[int, int]:
    """Hash of an n-element map: one update per element, then one per bucket."""
    return 0, n + int(qm.s)


def normaliser_work(qm: QuantModel) -> tuple[int, int]:
    """Squares and scaling (2s MACs); bit-serial division and square root ((2K+1) + (K+1) ops)."""
    k = int(qm.norm_k)
    return 2 * int(qm.s), (2 * k + 1) + (k + 1)


def projection_work(qm: QuantModel) -> tuple[int, int]:
    """h against every initialised unit's m basis vectors; one compare per unit."""
    return int(qm.initialised.sum()) * qm.m * int(qm.s), qm.num_units


def residue_work(qm: QuantModel) -> tuple[int, int]:
    """Reconstruction (m x s) and sum of squares (s) MACs; subtraction and accumulation (2s ops)."""
    s = int(qm.s)
    return qm.m * s + s, 2 * s


def unit_work(qm: QuantModel, unit: int, in_shape) -> tuple[int, int]:
    """One call of `unit` on a map of `in_shape` (C, H, W): fold, conv, activation, pool layers."""
    u = qm.units[unit]
    c, h, w = (int(v) for v in in_shape)
    ops = c * h * w if c != u.in_channels else 0
    c, macs = u.in_channels, 0
    for layer in u.layers:
        kind = layer_kinds.of(layer)
        dm, do = kind.work(layer, c, h, w)
        macs, ops = macs + dm, ops + do
        c, h, w = kind.out_shape(layer, c, h, w)
    return macs, ops


def head_work(qm: QuantModel, task: int) -> tuple[int, int]:
    """Task `task`'s dense layers: n_in x n_out MACs and n_out ops each."""
    shapes = [layer.weight.shape for layer in qm.heads[task].layers]
    return sum(int(a) * int(b) for a, b in shapes), sum(int(b) for _, b in shapes)


def service_cycles(core: dict, macs: int, ops: int) -> int:
    """Cycles of one job on a core (`arch["core"]`): overhead plus the MAC and op terms."""
    cycles = core["task_overhead"] + math.ceil(macs / core["macs_per_cycle"]) + math.ceil(ops / core["ops_per_cycle"])
    return max(1, cycles)


# ---- bytes of what moves and what stays ------------------------------------------------

def width_bytes(width: int) -> int:
    """Bytes of one element of a `width`-bit format."""
    return math.ceil(width / 8)


def map_bytes(state) -> int:
    """Bytes of a map state (`hrn_hw.rtl.crossbar.MapState`)."""
    return state.size * width_bytes(state.width)


def vector_bytes(qm: QuantModel) -> dict:
    """Bytes of the vectors that travel: phi, h, the projection's decision, the embedding."""
    s = int(qm.s)
    h = s * width_bytes(qm.h_fmt.width)
    unit_id = width_bytes(max(1, qm.num_units.bit_length()))
    return {"phi": 4 * s, "h": h, "decision": h + qm.m * width_bytes(qm.coef_fmt.width) + unit_id,
            "embedding": s * width_bytes(qm.emb_fmt.width)}


def logits_bytes(qm: QuantModel, task: int) -> int:
    """Bytes of a head's logits packet: max_classes values at its output width."""
    return qm.max_classes * width_bytes(qm.heads[task].layers[-1].out_fmt.width)


def _array_bytes(array, fmt) -> int:
    return 0 if array is None else int(np.size(array)) * width_bytes(fmt.width)


def unit_weight_bytes(qm: QuantModel, unit: int) -> int:
    """Conv weights and biases of a unit."""
    return sum(_array_bytes(array, fmt) for l in qm.units[unit].layers
               for array, fmt in layer_kinds.of(l).arrays(l).values())


def resident_bytes(qm: QuantModel, block: str, in_flight: int) -> dict:
    """What a block keeps in its core's SRAM: {what: bytes}."""
    if block.startswith("unit"):
        return {f"{block} weights": unit_weight_bytes(qm, int(block[4:]))}
    bases = int(qm.bases.size) * width_bytes(qm.basis_fmt.width)
    if block == "hash":
        return {"hash map buffer": in_flight * max(map_bytes(st) for st in routing_table(qm).states)}
    if block == "projection":
        return {"projection bases": bases}
    if block == "residue":
        return {"residue bases": bases, "residue embeddings": in_flight * vector_bytes(qm)["embedding"]}
    if block == "head":
        return {"head weights": sum(_array_bytes(l.weight, l.w_fmt) + _array_bytes(l.bias, l.b_fmt)
                                    for h in qm.heads for l in h.layers)}
    return {}


def frame_bytes(qm: QuantModel, block: str) -> int:
    """Largest input + output frame of a block's jobs (over every reachable call)."""
    table, vec = routing_table(qm), vector_bytes(qm)
    if block == "hash":
        return max(map_bytes(st) for st in table.states) + vec["phi"]
    if block.startswith("unit"):
        unit = int(block[4:])
        return max((map_bytes(table.states[a]) + map_bytes(table.states[b])
                    for (a, u), (_, b) in table.transitions.items() if u == unit), default=0)
    return {"normaliser": vec["phi"] + vec["h"], "projection": vec["h"] + vec["decision"],
            "residue": vec["decision"] + vec["embedding"],
            "head": vec["embedding"] + max(logits_bytes(qm, t) for t in range(len(qm.heads)))}[block]


# ---- the chain of one sample ------------------------------------------------------------

def sample_steps(qm: QuantModel, route, task: int, table=None) -> list[tuple]:
    """One sample's work, in order: ("compute", block, macs, ops) and ("packet", from_block,
    to_block, bytes), blocks as in the module docstring ("io" for the I/O cell)."""
    table = table or routing_table(qm)
    vec = vector_bytes(qm)
    units = [int(u) for u in route if int(u) >= 0]
    steps = [("packet", "io", "hash", map_bytes(table.states[0]))]
    state = 0
    for k in range(max(1, len(units))):
        steps += [("compute", "hash", *hash_work(qm, table.states[state].size)),
                  ("packet", "hash", "normaliser", vec["phi"]), ("compute", "normaliser", *normaliser_work(qm)),
                  ("packet", "normaliser", "projection", vec["h"]), ("compute", "projection", *projection_work(qm))]
        if k >= len(units):
            steps.append(("packet", "projection", "residue", DECISION_BYTES))
            break
        steps += [("packet", "projection", "residue", vec["decision"]), ("compute", "residue", *residue_work(qm))]
        if k < len(units) - 1:
            unit = f"unit{units[k]}"
            _, nxt = table.call(state, units[k])
            steps += [("packet", "residue", "hash", DECISION_BYTES),
                      ("packet", "hash", unit, map_bytes(table.states[state])),
                      ("compute", unit, *unit_work(qm, units[k], table.states[state].shape)),
                      ("packet", unit, "hash", map_bytes(table.states[nxt]))]
            state = nxt
    return steps + [("packet", "residue", "head", vec["embedding"]), ("compute", "head", *head_work(qm, task)),
                    ("packet", "head", "io", logits_bytes(qm, task))]


def class_steps(qm: QuantModel, work: Workload) -> tuple[list, np.ndarray]:
    """(steps per class, inverse [N]) for the workload's distinct (route, task) classes."""
    table = routing_table(qm)
    rows, inverse = work.classes()
    return [sample_steps(qm, row[:-1], int(row[-1]), table) for row in rows], inverse


def _blocks(chain: list) -> set:
    """Blocks that compute in one chain of steps."""
    return {st[1] for st in chain if st[0] == "compute"}


def _conv_units(chain: list) -> set:
    """Units whose conv runs in one chain of steps."""
    return {int(st[1][4:]) for st in chain if st[0] == "compute" and st[1].startswith("unit")}


def used_units(steps: list) -> list[int]:
    """Units whose conv runs in any of the classes' steps, ascending."""
    return sorted(set().union(*map(_conv_units, steps)))


def _jobs(steps: list, cell_of, arch: Arch) -> list[tuple]:
    """Engine jobs (label, pool, delay, duration, lead) of one chain of steps; `cell_of(block)`
    gives the cell a block's work runs on for this chain."""
    noc, jobs = arch["noc"], []
    for step in steps:
        if step[0] == "compute":
            cycles = service_cycles(arch["core"], step[2], step[3])
            jobs.append((step[1], mesh.core_name(cell_of(step[1])), 0, cycles, cycles))
        else:
            jobs += mesh.packet_jobs(cell_of(step[1]), cell_of(step[2]), step[3], noc["router_delay"],
                                     noc["link_bytes_per_cycle"])
    return jobs


# ---- placement checks --------------------------------------------------------------------

def _check_blocks(qm: QuantModel, arch: Arch) -> None:
    """One-line errors for placements and replicas that cannot be mapped."""
    units = {f"unit{u}" for u in range(qm.num_units)}
    for what, names in (("replicas", arch["replicas"]), ("placement", arch["placement"])):
        for name in names:
            if name not in units and name not in ROUTER_BLOCKS:
                raise ArchError(f"{arch.path}: {what}.{name}: no such unit in this export "
                                f"(units: unit0 .. unit{qm.num_units - 1})")
    for name, where in arch["placement"].items():
        if len(set(where)) != len(where):
            raise ArchError(f"{arch.path}: placement.{name}: a copy placed twice on the same cell {where}")
        if name in arch["replicas"] and arch["replicas"][name] != len(where):
            raise ArchError(f"{arch.path}: {name} has {len(where)} cells in placement but "
                            f"replicas.{name} = {arch['replicas'][name]}")


def _with_placement(arch: Arch, placement: dict) -> Arch:
    """`arch` with `placement` (block -> cells; "io" may be named if it stays) as its explicit
    placement; replicas of the units it places are dropped (their cells are their copies)."""
    cells = {k: [list(c) for c in (v if v and isinstance(v[0], (list, tuple)) else [v])] for k, v in placement.items()}
    io = cells.pop("io", None)
    if io is not None and io != [list(arch["io"])]:
        raise ArchError(f"placement: io is fixed at {list(arch['io'])} by {arch.path}, got {io}")
    replicas = {k: v for k, v in arch["replicas"].items() if k not in cells}
    return arch.with_(placement=cells, replicas=replicas)


def resolve_placement(qm: QuantModel, arch: Arch, used: list[int], placement: dict | None = None) -> dict:
    """The full placement (block -> cells, "io" included) of the blocks a workload needs, or a
    one-line ArchError."""
    if placement is not None:
        arch = _with_placement(arch, placement)
    _check_blocks(qm, arch)
    place = default_placement(qm, arch, used)
    rows, cols = arch["mesh"]
    for block in list(ROUTER_BLOCKS) + [f"unit{u}" for u in used]:
        want = len(arch["placement"][block]) if block in arch["placement"] else arch["replicas"].get(block, 1)
        got = len(place.get(block, []))
        if got < want:
            what = "no core" if got == 0 else f"{got} of its {want} copies"
            raise ArchError(f"{block} gets {what}: the default mapping ran out of free cells on the "
                            f"{rows} x {cols} mesh (io at {list(arch['io'])}); use a larger mesh, fewer replicas "
                            "or place it explicitly")
    return place


def sram_use(qm: QuantModel, arch: Arch, place: dict) -> dict:
    """Bytes each core holds: {core name: bytes}; ArchError (one line) when a core overflows."""
    on_core = {}
    for block, where in place.items():
        if block != "io":
            for cell in where:
                on_core.setdefault(tuple(cell), []).append(block)
    used, sram = {}, arch["core"]["sram_bytes"]
    for cell in sorted(on_core):
        items = {}
        for block in on_core[cell]:
            items.update(resident_bytes(qm, block, arch["in_flight"]))
        items["working frames"] = max(frame_bytes(qm, block) for block in on_core[cell])
        total = sum(items.values())
        name = mesh.core_name(cell)
        if total > sram:
            held = ", ".join(f"{k} {v} B" for k, v in items.items() if v)
            raise ArchError(f"{name} ({', '.join(on_core[cell])}) does not fit: it holds {held} = {total} B "
                            f"> its SRAM of {sram} B")
        used[name] = total
    return used


# ---- replicas ---------------------------------------------------------------------------

def _replicated(copies: dict) -> list[str]:
    return sorted(b for b, n in copies.items() if n > 1)


def copy_classes(steps: list, inverse: np.ndarray, copies: dict) -> tuple[np.ndarray, np.ndarray]:
    """(keys [K, 1 + R], sample_class [N]): each sample's route class and, per replicated block
    (copies[b] > 1, in name order), the copy it takes (static round robin over the samples that
    use the block, -1 for those that do not); keys are the distinct combinations."""
    replicated = _replicated(copies)
    if not replicated:
        keys = np.arange(len(steps), dtype=np.int64)[:, None]
        return keys, inverse
    code = inverse.astype(np.int64)                       # mixed radix: class, then copy + 1 per unit
    for b in replicated:
        runs = np.array([b in _blocks(chain) for chain in steps])[inverse]
        code = code * (copies[b] + 1) + np.where(runs, (np.cumsum(runs) - 1) % copies[b] + 1, 0)
    codes, sample_class = np.unique(code, return_inverse=True)
    columns = []
    for b in reversed(replicated):
        codes, digit = np.divmod(codes, copies[b] + 1)
        columns.insert(0, digit - 1)
    return np.stack([codes] + columns, axis=1), sample_class.reshape(-1)


def _cell_picker(place: dict, replicated: list, key) -> callable:
    choice = {b: int(c) for b, c in zip(replicated, key[1:])}
    return lambda block: tuple(place[block][max(0, choice.get(block, 0))])


def map_manycore(qm: QuantModel, work: Workload, arch: Arch, arrival: np.ndarray, trace_samples: int = 0,
                 placement: dict | None = None) -> Mapped:
    """The workload on the `manycore` architecture (module docstring); `placement` (block ->
    cells) replaces the architecture's explicit placement."""
    work.check_against(qm)
    steps, inverse = class_steps(qm, work)
    used = used_units(steps)
    place = resolve_placement(qm, arch, used, placement)
    sram = sram_use(qm, arch, place)
    copies = {b: len(v) for b, v in place.items() if b != "io"}
    keys, sample_class = copy_classes(steps, inverse, copies)
    replicated = _replicated(copies)
    chains = [_jobs(steps[int(key[0])], _cell_picker(place, replicated, key), arch) for key in keys]
    table = PoolTable()
    for cell in mesh.cells(arch["mesh"]):
        table.add(mesh.core_name(cell), "core")
    mesh.add_links(table, arch["mesh"])
    info = {"mesh": list(arch["mesh"]), "io": list(arch["io"]),
            "placement": {b: [list(c) for c in v] for b, v in place.items() if b != "io"},
            "sram_bytes_used": sram, "copies": copies, "ops_note": OPS_NOTE}
    return build(table, chains, sample_class, arrival, arch["in_flight"], trace_samples, info=info)
