"""Fixed-point formats and the one conversion rule every layer mirrors.

A format is (width, frac, signed, rounding): integer q in [-2**(width-1), 2**(width-1) - 1]
(or [0, 2**width - 1] unsigned) read as q / 2**frac. frac may exceed width or be negative.
Conversion of an exact integer `acc` carrying `acc_frac` fraction bits: shift to `frac` with
the format's rounding ("rnd": add half an LSB then floor, as ap_fixed AP_RND; "trn": floor,
as AP_TRN), then saturate (AP_SAT). Nothing ever wraps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

ROUNDINGS = ("rnd", "trn")


@dataclass(frozen=True)
class Fmt:
    """A fixed-point format."""

    width: int
    frac: int
    signed: bool = True
    rounding: str = "rnd"

    def __post_init__(self):
        if not (isinstance(self.width, int) and 1 <= self.width <= 48):
            raise ValueError(f"fixed-point width must be an integer in [1, 48], got {self.width!r}")
        if not isinstance(self.frac, int) or abs(self.frac) > 64:
            raise ValueError(f"fixed-point frac must be an integer in [-64, 64], got {self.frac!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")

    @property
    def int_bits(self) -> int:
        """Integer bits including the sign bit (ap_fixed's I)."""
        return self.width - self.frac

    @property
    def qmin(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Fmt":
        return cls(int(d["width"]), int(d["frac"]), bool(d.get("signed", True)), str(d.get("rounding", "rnd")))

    def c_type(self) -> str:
        """The ap_fixed type with this format's quantisation and overflow modes."""
        q = "AP_RND" if self.rounding == "rnd" else "AP_TRN"
        base = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{base}<{self.width}, {self.int_bits}, {q}, AP_SAT>"


class SatCounter(Counter):
    """Saturation events per tensor name (the golden model's overflow report)."""

    def total_events(self) -> int:
        return int(sum(self.values()))


def shift_round(acc: np.ndarray, shift: int, rounding: str = "rnd") -> np.ndarray:
    """acc / 2**shift rounded per `rounding` (shift <= 0 multiplies exactly)."""
    acc = np.asarray(acc, dtype=np.int64)
    if shift <= 0:
        return acc << np.int64(-shift)
    if rounding != "rnd":
        return acc >> np.int64(min(shift, 63))
    if shift == 1:
        return (acc >> np.int64(1)) + (acc & np.int64(1))
    if shift >= 64:                      # |acc| < 2**63 <= half an LSB: everything rounds to 0
        return np.zeros_like(acc)
    # floor((acc + 2**(shift-1)) / 2**shift) without forming acc + 2**(shift-1), which can
    # leave int64: halve first (floor of floors is exact).
    return ((acc >> np.int64(1)) + np.int64(1 << (shift - 2))) >> np.int64(shift - 1)


def convert(acc, acc_frac: int, fmt: Fmt, counter: SatCounter | None = None, name: str = "") -> np.ndarray:
    """Exact integer `acc` with `acc_frac` fraction bits -> format `fmt` (round, then saturate).

    Saturated elements are counted under `name` in `counter`.
    """
    q = shift_round(acc, acc_frac - fmt.frac, fmt.rounding)
    lo, hi = fmt.qmin, fmt.qmax
    if counter is not None:
        n = int(np.count_nonzero((q < lo) | (q > hi)))
        if n:
            counter[name] += n
    return np.clip(q, lo, hi)


def quantize(values: np.ndarray, fmt: Fmt, counter: SatCounter | None = None, name: str = "") -> np.ndarray:
    """Float array -> integers of `fmt` (round half up / floor, then saturate)."""
    v = np.asarray(values, dtype=np.float64) * (2.0 ** fmt.frac)
    q = np.floor(v + 0.5) if fmt.rounding == "rnd" else np.floor(v)
    lo, hi = fmt.qmin, fmt.qmax
    if counter is not None:
        n = int(np.count_nonzero((q < lo) | (q > hi)))
        if n:
            counter[name] += n
    return np.clip(q, lo, hi).astype(np.int64)


def fmt_for_range(max_abs: float, width: int, headroom: float = 1.0, signed: bool = True,
                  rounding: str = "rnd") -> Fmt:
    """The finest format of `width` bits whose range holds max_abs * headroom."""
    need = max(float(max_abs) * headroom, 2.0 ** -40)
    int_bits = int(np.floor(np.log2(need))) + 1          # magnitude bits above the point
    frac = width - int_bits - (1 if signed else 0)
    return Fmt(width, frac, signed, rounding)
