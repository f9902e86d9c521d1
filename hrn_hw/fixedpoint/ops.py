"""Exact integer primitives of the fixed-point datapath (golden definitions, numpy int64).

Each function takes integer arrays plus their fraction bits and returns exact integers; the
only rounding happens in `fmt.convert`. Products and sums stay exact: `matmul_exact` uses
float64 BLAS only when every partial sum is provably below 2**53, and int64 otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from hrn_hw.fixedpoint.fmt import Fmt, SatCounter, convert, shift_round

EXACT_F64 = 2 ** 53


def matmul_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for int64 arrays, exact (float64 when the bound allows, else int64)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return np.zeros((*a.shape[:-1], b.shape[-1]), dtype=np.int64)
    bound = int(np.abs(a).max()) * int(np.abs(b).max()) * a.shape[-1]
    if bound >= 2 ** 63:
        raise OverflowError(f"exact product bound 2**{math.log2(bound):.1f} exceeds int64")
    if bound < EXACT_F64:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def align(acc: np.ndarray, frac: int, to_frac: int) -> np.ndarray:
    """Exact re-scaling of an integer from `frac` to a finer `to_frac` (to_frac >= frac)."""
    if to_frac < frac:
        raise ValueError("align only moves to more fraction bits")
    return np.asarray(acc, dtype=np.int64) << np.int64(to_frac - frac)


# ---- normalisation: h = phi / ||phi|| with one exact integer 1/sqrt -----------------------

def inv_sqrt(energy: int, k: int) -> int:
    """floor(2**k / sqrt(energy)) for an integer energy > 0, exactly.

    Computed as isqrt(floor(2**(2k) / energy)): floor(sqrt(floor(x))) = floor(sqrt(x)) for real
    x >= 0, so this is the exact floor, with one integer division and one integer square root.
    """
    if energy <= 0:
        raise ValueError("inv_sqrt needs a positive energy")
    return math.isqrt((1 << (2 * k)) // int(energy))


def normalise(phi: np.ndarray, k: int, h_fmt: Fmt, counter: SatCounter | None = None) -> np.ndarray:
    """h = phi / ||phi||_2 per row of integer phi [n, s], in format h_fmt.

    E = sum phi^2 (exact); inv = inv_sqrt(E, k); h = convert(phi * inv, k, h_fmt). Since
    |phi_j| <= sqrt(E), |phi_j * inv| <= 2**k: no overflow for k <= 62. A zero row gives h = 0.
    Error: with inv >= 2**(frac_h + 2) (k chosen so, `norm_shift`), |h - phi/||phi||| < 0.75 LSB.
    The fraction bits of phi cancel, so one rule serves every map format.
    """
    phi = np.asarray(phi, dtype=np.int64)
    if not phi.size:
        energy = np.zeros(len(phi), dtype=np.int64)
    elif int(np.abs(phi).max()) ** 2 * phi.shape[1] < 1 << 63:
        energy = np.einsum("ij,ij->i", phi, phi)
    else:                                   # beyond int64: exact in Python integers
        energy = (phi.astype(object) ** 2).sum(axis=1)
    inv = np.array([inv_sqrt(int(e), k) if e > 0 else 0 for e in energy], dtype=np.int64)
    return convert(phi * inv[:, None], k, h_fmt, counter, "h")


def norm_shift(max_energy_bits: int, h_fmt: Fmt) -> int:
    """The k of `normalise`: inv >= 2**(frac_h + 2) for every energy below 2**max_energy_bits."""
    return h_fmt.frac + 2 + (max_energy_bits + 1) // 2


def energy_width(k: int, h_fmt: Fmt) -> int:
    """Bits of the energy accumulator (HLS, RTL) of a normaliser with shift k: every energy
    `norm_shift` chose k for fits (2 * (k - frac_h - 2) bits), and at least 64, the width of
    every export whose energies fit in int64 (their bits stay as they were)."""
    return max(64, 2 * (k - h_fmt.frac - 2))


# ---- projection comparator and residue -----------------------------------------------------

def project(h: np.ndarray, h_fmt: Fmt, bases: np.ndarray, b_fmt: Fmt, c_fmt: Fmt,
            counter: SatCounter | None = None):
    """Coefficients c [n, M, m] = convert(B h) and energies e [n, M] = sum_i c_i^2 (exact).

    bases [M, m, s] integers in b_fmt (zero rows for missing vectors).
    """
    M, m, s = bases.shape
    acc = matmul_exact(h, bases.reshape(M * m, s).T)
    coef = convert(acc, h_fmt.frac + b_fmt.frac, c_fmt, counter, "coef").reshape(len(h), M, m)
    energy = np.einsum("nui,nui->nu", coef, coef)
    return coef, energy


def select(energy: np.ndarray, allowed: np.ndarray):
    """Masked argmax over units, lowest index on ties: (unit [n], ok [n])."""
    masked = np.where(allowed, energy, -1)
    return masked.argmax(axis=1), allowed.any(axis=1)


def residue(h: np.ndarray, h_fmt: Fmt, basis: np.ndarray, coef: np.ndarray, b_fmt: Fmt, c_fmt: Fmt,
            r_fmt: Fmt, counter: SatCounter | None = None) -> np.ndarray:
    """r = convert(h - B^T c) per row; basis [n, m, s] and coef [n, m] of each row's unit."""
    frac = b_fmt.frac + c_fmt.frac
    if frac < h_fmt.frac:
        raise ValueError("basis + coefficient fraction bits must cover the hash's")
    recon = np.einsum("nis,ni->ns", basis, coef)
    return convert(align(h, h_fmt.frac, frac) - recon, frac, r_fmt, counter, "residue")


# ---- units ------------------------------------------------------------------------------

def fold_channels(x: np.ndarray, in_channels: int) -> np.ndarray:
    """[n, C, H, W] -> [n, in_channels, H, W]: channel c sums channels c, c + in_channels, ...;
    missing channels are zero (exact, no rounding)."""
    n, c, hgt, wid = x.shape
    if c == in_channels:
        return x
    groups = -(-c // in_channels)
    pad = groups * in_channels - c
    if pad:
        x = np.concatenate([x, np.zeros((n, pad, hgt, wid), dtype=x.dtype)], axis=1)
    return x.reshape(n, groups, in_channels, hgt, wid).sum(axis=1)


def pad_map(x: np.ndarray, kernel: int, padding: int) -> np.ndarray:
    """Zero padding on all sides, then bottom/right up to the kernel size if still smaller."""
    hgt, wid = x.shape[-2:]
    eh = max(0, kernel - (hgt + 2 * padding))
    ew = max(0, kernel - (wid + 2 * padding))
    if padding or eh or ew:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding + eh), (padding, padding + ew)))
    return x


def windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Sliding windows [n, Ho, Wo, C, k, k] of an already padded map [n, C, H, W]."""
    v = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    v = v[:, :, ::stride, ::stride]                       # [n, C, Ho, Wo, k, k]
    return v.transpose(0, 2, 3, 1, 4, 5)


def conv2d(x: np.ndarray, x_frac: int, weight: np.ndarray, w_frac: int, bias: np.ndarray | None,
           b_frac: int, stride: int, padding: int, out_fmt: Fmt, counter: SatCounter | None = None,
           name: str = "conv"):
    """Exact convolution, bias aligned, one conversion to out_fmt. Returns (y, acc_frac)."""
    o, c, k, _ = weight.shape
    win = windows(pad_map(x, k, padding), k, stride)
    n, ho, wo = win.shape[:3]
    acc = matmul_exact(win.reshape(n * ho * wo, c * k * k), weight.reshape(o, -1).T)
    frac = x_frac + w_frac
    if bias is not None:
        top = max(frac, b_frac)
        acc = align(acc, frac, top) + align(bias, b_frac, top)[None, :]
        frac = top
    acc = acc.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
    return convert(acc, frac, out_fmt, counter, name)


def maxpool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Max over k x k windows (zero-padded bottom/right only when the map is smaller)."""
    win = windows(pad_map(x, kernel, 0), kernel, stride)
    return win.max(axis=(4, 5)).transpose(0, 3, 1, 2)


def leaky_relu(x: np.ndarray, fmt: Fmt, alpha: int, alpha_frac: int,
               counter: SatCounter | None = None, name: str = "act") -> np.ndarray:
    """x if x > 0 else convert(alpha * x) in x's own format (hls4ml leaky_relu); alpha 0 = ReLU."""
    neg = convert(x * np.int64(alpha), fmt.frac + alpha_frac, fmt, counter, name)
    return np.where(x > 0, x, neg)


def dense(x: np.ndarray, x_frac: int, weight: np.ndarray, w_frac: int, bias: np.ndarray, b_frac: int,
          out_fmt: Fmt, counter: SatCounter | None = None, name: str = "dense") -> np.ndarray:
    """y = convert(x W + b): weight [n_in, n_out] (hls4ml order), exact accumulation."""
    acc = matmul_exact(x, weight)
    frac = x_frac + w_frac
    top = max(frac, b_frac)
    acc = align(acc, frac, top) + align(bias, b_frac, top)[None, :]
    return convert(acc, top, out_fmt, counter, name)


def energy_threshold(tau: float, frac: int) -> int:
    """Smallest integer T with T / 2**(2 frac) >= tau**2: stop iff sum r^2 < T."""
    from fractions import Fraction
    t = Fraction(tau) ** 2 * (1 << (2 * frac))
    return max(0, math.ceil(t))


__all__ = ["matmul_exact", "align", "inv_sqrt", "normalise", "norm_shift", "energy_width", "project", "select",
           "residue", "fold_channels", "pad_map", "windows", "conv2d", "maxpool", "leaky_relu",
           "dense", "energy_threshold", "shift_round"]
