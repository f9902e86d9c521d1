"""Shift-and-add constant multiplies and multiplier-sized operand pieces (hrn_hw.rtl.arith)."""

import random

import pytest
from amaranth import Signal, signed, unsigned

from conftest import evaluate_comb
from hrn_hw.rtl.arith import CHUNK, chunks, const_mul, csd_digits


@pytest.mark.parametrize("c", [0, 1, 3, 7, 25, 655, 1039, -3, -655, 0x85EBCA6B, 2**20 - 1])
def test_csd_digits_sum_to_the_constant_and_are_sparse(c):
    digits = csd_digits(c)
    assert sum(d << k for k, d in digits) == c
    shifts = [k for k, _ in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))      # no two adjacent nonzero digits


@pytest.mark.parametrize("shape", [signed(24), unsigned(11), signed(32)])
@pytest.mark.parametrize("c", [3, 25, 655, -655, 0x85EBCA6B])
def test_const_mul_is_exact(shape, c):
    rng = random.Random(c)
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    values = [lo, hi, 0, -1 if shape.signed else 1] + [rng.randint(lo, hi) for _ in range(50)]
    assert evaluate_comb(shape, lambda x: const_mul(x, c), values) == [v * c for v in values]


@pytest.mark.parametrize("width,is_signed", [(32, True), (49, False), (18, True), (17, False), (30, True)])
def test_chunks_fit_one_multiplier_and_sum_back(width, is_signed):
    shape = signed(width) if is_signed else unsigned(width)
    probe = Signal(shape)
    pieces = chunks(probe, width, is_signed)
    assert all(len(p) <= (CHUNK + 1 if is_signed else CHUNK) for _, p in pieces)
    rng = random.Random(width)
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else (0, (1 << width) - 1)
    values = [lo, hi, 0] + [rng.randint(lo, hi) for _ in range(50)]
    got = evaluate_comb(shape, lambda x: sum(p << k for k, p in chunks(x, width, is_signed)), values)
    assert got == values
