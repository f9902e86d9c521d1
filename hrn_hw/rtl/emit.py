# amaranth: UnusedElaboratable=no
# (a top level built only for its interface, or whose Verilog comes from the cache, is never elaborated)
"""`OUT/rtl/` of an export: the top level's Verilog, its memories, its knobs and its interface.

`hrn_top.v` reads every initialised memory (ROMs, and the RAMs Amaranth sets to zero) from a
`$readmemh` file beside it, `<module>.<memory>.hex` (`hrn_hw.rtl.memfiles`; rtl.json's
"memory_files" lists them with depth and width). The names in the Verilog are bare, and
tools resolve them relative to their own working directory: run the tool in OUT/rtl/, or copy
the .hex files next to where it runs (the Verilator runs and the Yosys counts here do).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hrn_hw.rtl.gen import to_verilog
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.memfiles import extract_memories, write_memfiles
from hrn_hw.rtl.top import HrnTop

CACHE_ENV = "HRN_HW_CACHE"

TOP_NAME = "hrn_top"
VERILOG = f"{TOP_NAME}.v"


def make_top(qm, knobs: RtlKnobs | None = None):
    """The top level the knobs ask for: `HrnTop` (one sample at a time) or, with in_flight >= 2,
    `PipelinedTop` (docs/rtl.md "Samples in flight")."""
    knobs = knobs or RtlKnobs()
    if knobs.replicas == "auto":
        if knobs.pipelined:
            raise ValueError("RTL knob replicas 'auto' must be chosen from a workload first "
                             "(hrn_hw.rtl.latency.resolve_knobs; hrn-hw export does it on the golden routes)")
        knobs = knobs.with_(replicas={})
    if knobs.pipelined:
        from hrn_hw.rtl.pipelined import PipelinedTop

        return PipelinedTop(qm, knobs)
    return HrnTop(qm, knobs)


def rtl_summary(top, memories: list) -> dict:
    """What OUT/rtl/rtl.json records: knobs, top-level interface widths, blocks and lanes, and
    the memory files (`memfiles.MemFile`s) beside the Verilog."""
    qm = top.qm
    return {
        "top": TOP_NAME,
        "verilog": VERILOG,
        "knobs": top.knobs.to_dict(),
        "conv_lanes": {str(u): eng.lanes for u, eng in top.engines.items()},
        "ports": {"in_data": len(top.in_data), "task": len(top.task), "emb_data": len(top.emb_data),
                  "out_data": len(top.out_data), "route": [int(qm.d), top.route_width],
                  **({"out_id": len(top.out_id), "emb_id": len(top.emb_id)} if hasattr(top, "out_id") else {})},
        "map_buffer": {"depth": top.map_depth, "width": top.map_width},
        "map_states": len(top.table.states),
        "crossbar_calls": len(top.table.transitions),
        "memories": (f"Memory contents in {len(memories)} $readmemh files beside {VERILOG} "
                     f"({sum(m.depth for m in memories)} words; rtl.json memory_files), read relative to "
                     f"the tool's working directory"),
        "memory_files": [{"file": m.file, "memory": m.memory, "depth": m.depth, "width": m.width}
                         for m in memories],
    }


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hrn-hw") / "rtl"


def _design_key(qm, knobs: RtlKnobs) -> str:
    """Digest of everything the Verilog depends on: the model's manifest and arrays, the knobs
    and the generator's own source (hrn_hw/rtl/*.py, and hrn_hw/layers/*.py: the layer kinds'
    conv engine stages)."""
    h = hashlib.sha256(json.dumps(qm.manifest(), sort_keys=True, default=str).encode())
    for name, arr in sorted(qm.arrays().items()):
        h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
    h.update(json.dumps(knobs.to_dict(), sort_keys=True).encode())
    pkg = Path(__file__).parent.parent
    for src in sorted([*(pkg / "rtl").glob("*.py"), *(pkg / "layers").glob("*.py")]):
        h.update(src.read_bytes())
    return h.hexdigest()[:32]


def top_verilog(top) -> str:
    """The top level's Verilog as Amaranth writes it (memory contents inline; `write_rtl` splits
    them out). Amaranth takes tens of seconds on the ROMs of a real model, so the text is cached
    by a digest of everything it depends on (~/.cache/hrn-hw/rtl, or $HRN_HW_CACHE/rtl); a
    cache that cannot be written is skipped."""
    path = _cache_dir() / f"{_design_key(top.qm, top.knobs)}.v"
    if path.is_file():
        return path.read_text()
    text = to_verilog(top, TOP_NAME)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        pass
    return text


def write_rtl(qm, directory: str | Path, knobs: RtlKnobs | None = None) -> dict:
    """Write OUT/rtl/hrn_top.v, its memories' .hex files (those of an earlier design there are
    removed) and rtl.json for a QuantModel; returns the summary."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    top = make_top(qm, knobs)
    text, memories = extract_memories(top_verilog(top))
    keep = {m.file for m in memories}
    for stale in directory.glob("*.hex"):
        if stale.name not in keep:
            stale.unlink()
    write_memfiles(directory, {m.file: m.hex for m in memories})
    (directory / VERILOG).write_text(text)
    summary = rtl_summary(top, memories)
    (directory / "rtl.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def read_knobs(directory: str | Path) -> RtlKnobs:
    """The knobs an export's RTL was generated with (OUT/rtl/rtl.json)."""
    path = Path(directory) / "rtl.json"
    return RtlKnobs.from_record(json.loads(path.read_text())["knobs"])
