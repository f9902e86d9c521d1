"""C++ type names and exact literals for the rendered HLS project."""

from __future__ import annotations

import math

import numpy as np

from hrn_hw.errors import ExportError
from hrn_hw.fixedpoint.fmt import Fmt


def acc_type(frac: int, bound: int, signed: bool = True) -> str:
    """An ap_fixed that holds every integer up to `bound` (in units of 2**-frac) exactly."""
    width = acc_width(bound)
    return f"ap_fixed<{width}, {width - frac}>" if signed else f"ap_ufixed<{width}, {width - frac}>"


def acc_width(bound: int) -> int:
    """Width of the accumulator `acc_type` builds for `bound`."""
    return max(2, int(bound).bit_length() + 2)


def check_conversion(src_width: int, src_frac: int, dst: Fmt, name: str) -> None:
    """Refuse a rounding conversion whose half-LSB lies above the source's MSB.

    Every such value rounds to 0 (the golden model agrees), but ap_fixed's C simulation aborts
    on it, so a format this coarse is an error at export rather than a crash in C-sim.
    """
    shift = src_frac - dst.frac
    if dst.rounding == "rnd" and shift - 1 >= src_width:
        raise ExportError(f"{name}: format {dst.c_type()} is too coarse for its {src_width}-bit accumulator "
                          f"with {src_frac} fraction bits (every value would round to 0)")


def raw_c_type(width: int) -> str:
    """The plain C integer type that stores raw values of a format `width` bits wide.

    Weights live in ROMs of plain integers: g++ compiles millions of them in seconds, while
    as many ap_fixed initialisers take minutes (each is a constructor call).
    """
    return "int16_t" if width <= 16 else "int32_t"


def array_init(values: np.ndarray, per_line: int = 20) -> str:
    """Brace initialiser of an integer array (nested for > 1-D)."""
    if values.ndim > 1:
        return "{" + ", ".join(array_init(v, per_line) for v in values) + "}"
    items = [str(int(v)) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "{" + ",\n    ".join(lines) + "}"


def max_int(fmt: Fmt) -> int:
    return max(abs(fmt.qmin), abs(fmt.qmax))


def log2_ceil(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0
