"""Fixed-point conversion in hardware: the one Amaranth form of `Fmt.convert` every block uses
(round half up or truncate, arithmetic shift, saturate), bit-exact with
`hrn_hw.fixedpoint.fmt.convert`."""

from __future__ import annotations

from amaranth import Mux

from hrn_hw.fixedpoint.fmt import Fmt


def saturate(q, fmt: Fmt):
    """q clamped to fmt's integer range."""
    return Mux(q > fmt.qmax, fmt.qmax, Mux(q < fmt.qmin, fmt.qmin, q))


def shift_right(value, amount: int):
    """value >> amount (arithmetic), or value << -amount for a negative amount."""
    return value >> amount if amount > 0 else value << -amount


def convert_expr(value, acc_frac: int, fmt: Fmt):
    """Amaranth expression of `fmt.convert`: an exact signed integer with acc_frac fraction
    bits -> fmt (add half an LSB for rnd, arithmetic shift, saturate)."""
    shift = acc_frac - fmt.frac
    if shift > 0:
        half = (1 << (shift - 1)) if fmt.rounding == "rnd" else 0
        return saturate((value + half) >> shift, fmt)
    return saturate(value << -shift, fmt)
