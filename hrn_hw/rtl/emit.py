# amaranth: UnusedElaboratable=no
# (a top level built only for its interface, or whose Verilog comes from the cache, is never elaborated)
"""`OUT/rtl/` of an export: the top level's Verilog, its knobs and its interface."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hrn_hw.rtl.gen import to_verilog
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.top import HrnTop

CACHE_ENV = "HRN_HW_CACHE"

TOP_NAME = "hrn_top"
VERILOG = f"{TOP_NAME}.v"


def rtl_summary(top: HrnTop) -> dict:
    """What OUT/rtl/rtl.json records: knobs, top-level interface widths, blocks and lanes."""
    qm = top.qm
    return {
        "top": TOP_NAME,
        "verilog": VERILOG,
        "knobs": top.knobs.to_dict(),
        "conv_lanes": {str(u): eng.lanes for u, eng in top.engines.items()},
        "ports": {"in_data": len(top.in_data), "task": len(top.task), "emb_data": len(top.emb_data),
                  "out_data": len(top.out_data), "route": [int(qm.d), top.route_width]},
        "map_buffer": {"depth": top.map_depth, "width": top.map_width},
        "map_states": len(top.table.states),
        "crossbar_calls": len(top.table.transitions),
        "memories": "ROM contents are inlined in the Verilog as initial blocks (Amaranth output)",
    }


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hrn-hw") / "rtl"


def _design_key(qm, knobs: RtlKnobs) -> str:
    """Digest of everything the Verilog depends on: the model's manifest and arrays, the knobs
    and the generator's own source (hrn_hw/rtl/*.py)."""
    h = hashlib.sha256(json.dumps(qm.manifest(), sort_keys=True, default=str).encode())
    for name, arr in sorted(qm.arrays().items()):
        h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
    h.update(json.dumps(knobs.to_dict(), sort_keys=True).encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.read_bytes())
    return h.hexdigest()[:32]


def top_verilog(top: HrnTop) -> str:
    """The top level's Verilog. Amaranth takes tens of seconds on the ROMs of a real model, so
    the text is cached by a digest of everything it depends on (~/.cache/hrn-hw/rtl, or
    $HRN_HW_CACHE/rtl); a cache that cannot be written is skipped."""
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
    """Write OUT/rtl/hrn_top.v and rtl.json for a QuantModel; returns the summary."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    top = HrnTop(qm, knobs)
    (directory / VERILOG).write_text(top_verilog(top))
    summary = rtl_summary(top)
    (directory / "rtl.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def read_knobs(directory: str | Path) -> RtlKnobs:
    """The knobs an export's RTL was generated with (OUT/rtl/rtl.json)."""
    path = Path(directory) / "rtl.json"
    return RtlKnobs.from_dict(json.loads(path.read_text())["knobs"])
