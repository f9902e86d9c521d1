"""Arithmetic forms that map well onto FPGA fabric (docs/rtl.md, "Timing closure").

- `const_mul`: a signal times a constant as shifts and adds (canonical signed digits), so
  synthesis spends LUT carry chains on it and no hard multiplier: Yosys maps every `$mul` with
  operands of 2 or more bits onto a MULT18X18D, constants included, and the conv engines'
  address arithmetic and LeakyReLU slopes took 15 of each engine's 23 multipliers that way.
- `chunks`: an operand cut into pieces that each fit one 18 x 18 signed multiplier (17-bit
  unsigned low pieces, a signed top piece), for products split into registered partial
  products.
"""

from __future__ import annotations

from amaranth import Const

from hrn_hw.rtl.rows import tree_sum

CHUNK = 17          # unsigned bits of a low piece: one MULT18X18D input with its sign bit zero


def csd_digits(c: int) -> list[tuple[int, int]]:
    """Canonical signed digits of c: [(shift, +1 or -1)], the fewest nonzero digits, c ==
    sum(sign << shift)."""
    digits, k = [], 0
    while c:
        if c & 1:
            d = 2 - (c & 3)          # +1 when c = 1 mod 4, -1 when c = 3 mod 4
            digits.append((k, d))
            c -= d
        c >>= 1
        k += 1
    return digits


def csd_terms(x, c: int) -> tuple[list, list]:
    """The shifted copies of x that x * c adds and subtracts: ([x << k for +1 digits], [x << k
    for -1 digits]) of c's canonical signed digits."""
    digits = csd_digits(int(c))
    return [x << k for k, d in digits if d > 0], [x << k for k, d in digits if d < 0]


def const_mul(x, c: int):
    """x * c (c a Python int) as a balanced sum of shifted copies of x (no multiplier cell);
    exact, with Amaranth's widening arithmetic."""
    if int(c) == 0:
        return Const(0, 1)
    pos, neg = csd_terms(x, c)
    if not neg:
        return tree_sum(pos)
    if not pos:
        return -tree_sum(neg)
    return tree_sum(pos) - tree_sum(neg)


def chunks(value, width: int, signed: bool) -> list[tuple[int, object]]:
    """value (an Amaranth value of `width` bits) as [(shift, piece)]: low pieces of CHUNK
    unsigned bits, the top piece signed when value is, so that each piece times another piece
    is one 18 x 18 signed multiply; value == sum(piece << shift)."""
    out, lo = [], 0
    while width - lo > (CHUNK + 1 if signed else CHUNK):
        out.append((lo, value[lo:lo + CHUNK].as_unsigned()))
        lo += CHUNK
    top = value[lo:width]
    out.append((lo, top.as_signed() if signed else top.as_unsigned()))
    return out
