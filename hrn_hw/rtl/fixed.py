"""Fixed-point conversion in hardware: the one Amaranth form of `Fmt.convert` every block uses
(round half up or truncate, arithmetic shift, saturate), bit-exact with
`hrn_hw.fixedpoint.fmt.convert`, and its form with the saturation decided beside the rounding
add (`convert_parallel`, for a convert on a critical path)."""

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


def convert_parallel(value, acc_frac: int, fmt: Fmt):
    """`convert_expr(value, acc_frac, fmt)` (bit-exact) with the saturation decided from value
    itself, in parallel with the rounding add (not after it): for shift = acc_frac - frac > 0
    and half = 2^(shift-1) (rnd) or 0 (trn), (value + half) >> shift > qmax iff value >=
    (qmax + 1) 2^shift - half, and < qmin iff value < qmin 2^shift - half; all on value >>
    (shift - 1) (those constants have no bits below), so every carry chain is the short one."""
    shift = acc_frac - fmt.frac
    if shift <= 0:
        return convert_expr(value, acc_frac, fmt)
    if fmt.rounding == "rnd":
        v = value >> (shift - 1)
        q = (v + 1) >> 1
        hi, lo = v >= 2 * (fmt.qmax + 1) - 1, v < 2 * fmt.qmin - 1
    else:
        q = value >> shift
        hi, lo = q > fmt.qmax, q < fmt.qmin
    return Mux(hi, fmt.qmax, Mux(lo, fmt.qmin, q))
