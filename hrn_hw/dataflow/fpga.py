"""The FPGA architectures: the generated top level (`rtl`) and its pipelined form.

Service times are the RTL's own: `rtl` replays `hrn_hw.rtl.latency.sample_ops` (the cycle
model's schedule, so one sample in flight gives every sample exactly the model's cycles), and
`fpga-pipelined` runs `hrn_hw.rtl.latency.pipelined_ops` (the blocks' cycle formulas per
frame). Nothing here computes a cycle count of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hrn_hw.dataflow.arch import Arch, ArchError
from hrn_hw.dataflow.mapped import Mapped, PoolTable, build
from hrn_hw.dataflow.workload import Workload
from hrn_hw.export.ir import QuantModel
from hrn_hw.rtl.crossbar import routing_table
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.latency import auto_replicas, pipelined_ops, sample_ops


def resolve_knobs(arch: Arch, export_dir: Path | None) -> tuple[RtlKnobs, str]:
    """(knobs, where from): the architecture's `knobs`, else the export's OUT/rtl/rtl.json,
    else the RTL's defaults."""
    if arch["knobs"] is not None:
        return arch["knobs"], f"the knobs of {arch.path}"
    path = None if export_dir is None else Path(export_dir) / "rtl" / "rtl.json"
    if path is not None and path.is_file():
        try:
            return RtlKnobs.from_record(json.loads(path.read_text())["knobs"]), f"the export's knobs ({path})"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArchError(f"{path}: unreadable RTL knobs ({exc.__class__.__name__})") from None
    return RtlKnobs(), "the RTL's default knobs (the export has no rtl/rtl.json)"


KNOBLESS_IN_FLIGHT = 4          # in_flight: knobs, when the knobs hold one sample at a time


def resolve_arch(arch: Arch, export_dir: Path | None, knobs: RtlKnobs | None = None) -> Arch:
    """`fpga-pipelined` settings given as "knobs" (the built-in file's) replaced by the RTL
    knobs' (`knobs`, else `resolve_knobs`): the pipelined top level's samples in flight and
    replicas, or 4 samples and no replicas when the knobs hold one sample at a time."""
    if arch.kind != "fpga-pipelined" or "knobs" not in (arch["in_flight"], arch["replicas"]):
        return arch
    knobs = knobs or resolve_knobs(arch, export_dir)[0]
    pipelined = knobs.in_flight >= 2
    changes = {}
    if arch["in_flight"] == "knobs":
        changes["in_flight"] = knobs.in_flight if pipelined else KNOBLESS_IN_FLIGHT
    if arch["replicas"] == "knobs":
        changes["replicas"] = knobs.replicas if knobs.replicas == "auto" else dict(knobs.replicas)
    return arch.with_(**changes)


def slot_bits(qm: QuantModel) -> dict:
    """Bits of the buffers one sample in flight holds: the map buffer (largest map state at the
    widest map format), the phi buffer (32-bit words), the h buffer and the embedding
    accumulator."""
    states = routing_table(qm).states
    map_width = max(st.width + (0 if st.signed else 1) for st in states)
    return {"map_buffer": max(st.size for st in states) * map_width, "phi_buffer": int(qm.s) * 32,
            "h_buffer": int(qm.s) * qm.h_fmt.width,
            "embedding": int(qm.s) * qm.residue_fmt.width}


def frame_bits(qm: QuantModel) -> dict:
    """Bits of the largest frame each engine's FIFO holds: maps before the hash unit, phi
    (32-bit) before the normaliser, h before the projection; decisions (a unit id and m
    coefficients) before the residue block and the conv engines, a task id before the head."""
    states = routing_table(qm).states
    map_width = max(st.width + (0 if st.signed else 1) for st in states)
    decision = max(1, (qm.num_units - 1).bit_length()) + qm.m * qm.coef_fmt.width
    out = {"input": states[0].size * map_width, "hash": max(st.size for st in states[1:] or states) * map_width,
           "normaliser": int(qm.s) * 32,
           "projection": int(qm.s) * qm.h_fmt.width, "residue": decision, "head": max(1, len(qm.heads).bit_length())}
    out.update({f"unit{u}": decision for u in range(qm.num_units)})
    return out


def _check_replicas(arch: Arch, engines: set) -> None:
    for name in arch["replicas"]:
        if name == "input" and arch["replicas"][name] > 1:
            raise ArchError(f"{arch.path}: replicas.input: the input engine is the one input port's hash unit "
                            "(one copy)")
        if name not in engines:
            raise ArchError(f"{arch.path}: replicas.{name}: no such engine in this export "
                            f"(engines: {', '.join(sorted(engines))})")


def map_fpga(qm: QuantModel, work: Workload, arch: Arch, knobs: RtlKnobs, arrival: np.ndarray,
             trace_samples: int = 0) -> Mapped:
    """The workload on `rtl` (one sample in flight, the top level's schedule) or on
    `fpga-pipelined` (engines joined by FIFOs)."""
    table = routing_table(qm)
    rows, inverse = work.classes()
    pipelined = arch.kind == "fpga-pipelined"
    arch = resolve_arch(arch, None, knobs)
    if pipelined and arch["replicas"] == "auto":      # chosen from this workload, as the export does
        arch = arch.with_(replicas=auto_replicas(qm, work.routes, work.tasks, knobs))
    schedule = pipelined_ops if pipelined else sample_ops
    per_class = [schedule(qm, row[:-1], int(row[-1]), knobs, table) for row in rows]
    engines = ["input", "hash", "normaliser", "projection", "residue"] if pipelined else ["hash", "route", "residue"]
    engines += [f"unit{u}" for u in range(qm.num_units) if any(op[1] == f"unit{u}" for ops in per_class for op in ops)]
    engines.append("head")
    pools = PoolTable()
    frames = frame_bits(qm)
    if pipelined:
        _check_replicas(arch, set(engines) | {f"unit{u}" for u in range(qm.num_units)})
        depth = arch["fifo_depth"]
        for name in engines:
            cap = depth.get(name) if isinstance(depth, dict) else depth
            pools.add(name, "engine", arch["replicas"].get(name, 1), cap, frames.get(name, 0))
    else:
        for name in engines:
            pools.add(name, "engine")
    chains = [[(phase, engine, 0, cycles, cycles) for phase, engine, cycles in ops] for ops in per_class]
    slots = slot_bits(qm)
    info = {"knobs": knobs.to_dict(), "engines": engines, "slot_buffers_bits": slots,
            "replicas": dict(arch["replicas"]) if pipelined else {},
            "fifo_depth": (arch["fifo_depth"] if pipelined else None)}
    return build(pools, chains, inverse, arrival, arch["in_flight"] if pipelined else 1, trace_samples,
                 slot_bits=sum(slots.values()), info=info)
