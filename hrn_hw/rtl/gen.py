"""Verilog generation of the RTL blocks, and their parameters from an export's QuantModel."""

from __future__ import annotations

from pathlib import Path

from amaranth.back import verilog

from hrn_hw.fixedpoint.fmt import Fmt


def to_verilog(component, name: str) -> str:
    """Verilog text of an Amaranth component (ports from its signature, plus clk and rst)."""
    return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, name: str, path: str | Path) -> Path:
    """Write `component` as module `name` to `path` (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(to_verilog(component, name))
    tmp.replace(path)
    return path


def hash_unit_params(qm, map_shape=None, map_fmt: Fmt | None = None) -> dict:
    """HashUnit parameters for one hash source of a QuantModel: the raw image by default
    (u8 pixels), or a unit output map of `map_shape` [C, H, W] in `map_fmt`."""
    import numpy as np

    if map_shape is None:
        shape, width, is_signed = tuple(qm.input_shape), 8, False
    else:
        shape, width, is_signed = tuple(map_shape), map_fmt.width, map_fmt.signed
    return {"s": int(qm.s), "in_width": int(width), "in_signed": bool(is_signed),
            "max_n": int(np.prod(shape))}


def normaliser_params(qm) -> dict:
    """Normaliser parameters of a QuantModel: s, K (manifest hrn.norm_k) and the h format."""
    return {"s": int(qm.s), "norm_k": int(qm.norm_k), "h_fmt": qm.h_fmt}
