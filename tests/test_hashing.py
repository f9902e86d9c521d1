"""Index feature hashing (docs/design.md section 2): fmix32, buckets/signs, hash matrix, phi, h."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hrn_hw.reference.hashing import feature_hash, fmix32, hash_matrix, index_hash, normalise, normalised_hash
from hrn_hw.reference.hrn import draw_seed

M32 = 0xFFFFFFFF


# ---- an independent plain-Python MurmurHash3 (x86, 32-bit) -----------------------------------

def fmix32_py(h: int) -> int:
    h &= M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def murmur3_32(data: bytes, seed: int, fmix=fmix32_py) -> int:
    """MurmurHash3_x86_32 with a pluggable finaliser (to check the reference's fmix32 inside it)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & M32
    nblocks = len(data) // 4
    for i in range(nblocks):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * c1) & M32
        k = _rotl32(k, 15)
        k = (k * c2) & M32
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & M32
    tail = data[4 * nblocks:]
    k = 0
    for i, b in enumerate(tail):
        k |= b << (8 * i)
    if tail:
        k = (k * c1) & M32
        k = _rotl32(k, 15)
        k = (k * c2) & M32
        h ^= k
    h ^= len(data)
    return fmix(h)


def ref_fmix(h: int) -> int:
    return int(fmix32(np.array([h], dtype=np.uint64))[0])


# Published MurmurHash3_x86_32 test vectors. For the empty input the hash is fmix32(seed).
KNOWN_MURMUR = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"\x21\x43\x65\x87", 0, 0xF55B516B),
    (b"\x21\x43\x65\x87", 0x5082EDEE, 0x2362F9DE),
    (b"\x21\x43\x65", 0, 0x7E4A8634),
    (b"\x21\x43", 0, 0xA0F7B07A),
    (b"\x21", 0, 0x72661CF4),
    (b"Hello, world!", 1234, 0xFAF6CDB3),
    (b"The quick brown fox jumps over the lazy dog", 0, 0x2E4FF723),
]


@pytest.mark.parametrize("data,seed,expected", KNOWN_MURMUR)
def test_plain_python_murmur3_matches_published_vectors(data, seed, expected):
    # validates the independent implementation used as the oracle below
    assert murmur3_32(data, seed) == expected


@pytest.mark.parametrize("data,seed,expected", KNOWN_MURMUR)
def test_reference_fmix32_finalises_murmur3_correctly(data, seed, expected):
    assert murmur3_32(data, seed, fmix=ref_fmix) == expected


def test_fmix32_known_values():
    assert ref_fmix(0) == 0
    assert ref_fmix(1) == 0x514E28B7
    assert ref_fmix(0xFFFFFFFF) == 0x81F16F39


def test_fmix32_matches_plain_python_on_many_values():
    rng = np.random.default_rng(123)
    xs = np.concatenate([
        np.arange(0, 4096, dtype=np.uint64),
        rng.integers(0, 2**32, size=4096, dtype=np.uint64),
        np.array([2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 0x85EBCA6B, 0xC2B2AE35], dtype=np.uint64),
    ])
    got = fmix32(xs)
    assert got.dtype == np.uint64
    assert np.all(got <= M32)
    assert [int(v) for v in got] == [fmix32_py(int(v)) for v in xs]


def test_fmix32_is_a_bijection_on_a_range():
    out = fmix32(np.arange(1 << 16, dtype=np.uint64))
    assert len(np.unique(out)) == 1 << 16


# ---- buckets and signs ----------------------------------------------------------------------

SEEDS = [0, 1, 2, 0xDEADBEEF, 0x80000000, 0xFFFFFFFF]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("s", [1, 7, 300, 1000])
def test_index_hash_buckets_and_signs_follow_design(seed, s):
    n = 1600
    buckets, signs = index_hash(seed, n, s)
    assert buckets.shape == (n,) and signs.shape == (n,)
    for j in range(n):
        u = fmix32_py(fmix32_py(j) ^ seed)
        assert buckets[j] == (u * s) >> 32
        assert signs[j] == (1 if u & 1 == 0 else -1)
    assert buckets.min() >= 0 and buckets.max() < s
    assert set(np.unique(signs).tolist()) <= {-1, 1}


def test_index_hash_fixed_vectors():
    # u = fmix32(fmix32(j) ^ seed), written out for a few entries
    for seed in (0, 7, 0x12345678):
        b, sg = index_hash(seed, 5, 300)
        for j in range(5):
            u = fmix32_py(fmix32_py(j) ^ seed)
            assert (int(b[j]), int(sg[j])) == ((u * 300) >> 32, 1 - 2 * (u & 1))
    # j = 0, seed = 0: fmix32(fmix32(0)) = 0 -> bucket 0, sign +1
    b, sg = index_hash(0, 1, 300)
    assert int(b[0]) == 0 and int(sg[0]) == 1
    # j = 0, seed = 1: u = fmix32(1) = 0x514E28B7 (odd) -> bucket (u*300)>>32, sign -1
    b, sg = index_hash(1, 1, 300)
    assert int(b[0]) == (0x514E28B7 * 300) >> 32 == 95 and int(sg[0]) == -1


def test_index_hash_uses_inner_fmix():
    # with fmix32(j ^ seed) seeds 0 and 1 would just permute indices 2k <-> 2k+1
    b0, s0 = index_hash(0, 1024, 300)
    b1, s1 = index_hash(1, 1024, 300)
    swapped = np.arange(1024) ^ 1
    assert not np.array_equal(b0, b1[swapped])


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40])
def test_index_hash_rejects_non_32_bit_seeds(seed):
    with pytest.raises(ValueError):
        index_hash(seed, 10, 300)


def test_buckets_and_signs_are_roughly_uniform():
    b, sg = index_hash(0xC0FFEE, 30000, 300)
    counts = np.bincount(b, minlength=300)
    assert counts.min() > 50 and counts.max() < 150     # mean 100
    assert abs(int(sg.sum())) < 600                      # ~ 3 sigma is ~520


# ---- hash matrix and phi --------------------------------------------------------------------

@pytest.mark.parametrize("seed,n,s", [(0, 784, 300), (0xDEADBEEF, 1600, 300), (5, 37, 8), (9, 10, 1)])
def test_hash_matrix_one_signed_entry_per_row(seed, n, s):
    P = hash_matrix(seed, n, s)
    assert P.shape == (n, s) and P.dtype == torch.float32
    nz = (P != 0).sum(1)
    assert torch.all(nz == 1)
    assert set(P[P != 0].unique().tolist()) <= {-1.0, 1.0}
    b, sg = index_hash(seed, n, s)
    assert torch.equal(P.argmax(1).where(P.max(1).values > 0, P.argmin(1)), torch.from_numpy(b))
    assert torch.equal(P.sum(1), torch.from_numpy(sg.astype(np.float32)))


def test_feature_hash_equals_explicit_scatter_in_chw_order():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64).float()
    seed, s = 0x1234ABCD, 17
    phi = feature_hash(y, seed, s)
    b, sg = index_hash(seed, 4 * 5 * 6, s)
    expect = np.zeros((3, s))
    yn = y.double().numpy()
    for n in range(3):
        for c in range(4):
            for i in range(5):
                for k in range(6):
                    j = (c * 5 + i) * 6 + k
                    expect[n, b[j]] += sg[j] * yn[n, c, i, k]
    np.testing.assert_allclose(phi.double().numpy(), expect, rtol=1e-5, atol=1e-5)


def test_feature_hash_is_linear():
    g = torch.Generator().manual_seed(1)
    y1 = torch.rand(4, 16, 10, 10, generator=g)
    y2 = torch.randn(4, 16, 10, 10, generator=g)
    a, c = 0.7, -2.5
    seed, s = 77, 300
    lhs = feature_hash(a * y1 + c * y2, seed, s)
    rhs = a * feature_hash(y1, seed, s) + c * feature_hash(y2, seed, s)
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-4)
    # batch rows are hashed independently
    torch.testing.assert_close(feature_hash(y1[2:3], seed, s), feature_hash(y1, seed, s)[2:3])


def test_feature_hash_preserves_norm_in_expectation():
    # E ||phi(y)||^2 = ||y||^2 for a signed hash; check on average over many maps
    g = torch.Generator().manual_seed(2)
    y = torch.randn(200, 784, generator=g)
    ratio = feature_hash(y, 99, 300).square().sum(1) / y.square().sum(1)
    assert abs(float(ratio.mean()) - 1.0) < 0.05


def _cos(a, b):
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize("shape", [(1, 28, 28), (16, 10, 10), (16, 4, 4)])
def test_distinct_seeds_decorrelate_non_negative_maps(shape):
    s = 300
    g = torch.Generator().manual_seed(3)
    y = torch.rand(64, *shape, generator=g)                      # non-negative maps
    y = y * (torch.rand(64, *shape, generator=g) < 0.5)          # some sparse, still >= 0
    bound = 4 / math.sqrt(s)
    rng = np.random.default_rng(4)
    seeds = [int(v) for v in rng.integers(0, 2**32, size=6, dtype=np.uint64)]
    seeds += [0, 1, 2, 3]                                          # differing only in low bits
    seeds += [draw_seed(0, k, set()) for k in range(5)]            # the model's own seed draws
    phis = [feature_hash(y, sd, s) for sd in seeds]
    means = []
    for i in range(len(seeds)):
        for j in range(i + 1, len(seeds)):
            c = _cos(phis[i], phis[j]).abs()
            means.append(float(c.mean()))
            assert float(c.mean()) < bound, (seeds[i], seeds[j], float(c.mean()))
    # and the average over all pairs is near the ~sqrt(2/pi)/sqrt(s) of independent hashes
    assert np.mean(means) < 2 / math.sqrt(s)
    # the same seed is perfectly correlated
    for p in phis[:3]:
        torch.testing.assert_close(_cos(p, p), torch.ones(64), rtol=0, atol=1e-5)


def test_draw_seed_gives_distinct_32_bit_seeds():
    taken: set[int] = set()
    for k in range(50):
        sd = draw_seed(0, k, taken)
        assert 0 <= sd < 2**32 and sd not in taken
        taken.add(sd)
    assert draw_seed(3, 4, set()) == draw_seed(3, 4, set())


# ---- normalised hash ------------------------------------------------------------------------

def test_normalised_hash_unit_norm_and_zero_map():
    g = torch.Generator().manual_seed(5)
    y = torch.rand(5, 1, 28, 28, generator=g)
    y[2] = 0
    h = normalised_hash(y, 1234, 300)
    assert torch.all(torch.isfinite(h))
    norms = h.norm(dim=1)
    torch.testing.assert_close(norms[[0, 1, 3, 4]], torch.ones(4), rtol=0, atol=1e-5)
    assert torch.equal(h[2], torch.zeros(300))
    phi = feature_hash(y, 1234, 300)
    torch.testing.assert_close(h[0], phi[0] / phi[0].norm())


def test_normalised_hash_zero_map_has_finite_gradient():
    y = torch.zeros(2, 1, 28, 28, requires_grad=True)
    h = normalised_hash(y, 1234, 300)
    h.sum().backward()
    assert torch.all(torch.isfinite(y.grad))


def test_normalised_hash_is_scale_invariant():
    # the paper's L-inf pre-scaling cancels under L2 normalisation (docs/design.md section 2)
    g = torch.Generator().manual_seed(6)
    y = torch.rand(3, 16, 10, 10, generator=g)
    h1 = normalised_hash(y, 42, 300)
    h2 = normalised_hash(y / y.flatten(1).abs().max(1).values.view(-1, 1, 1, 1), 42, 300)
    torch.testing.assert_close(h1, h2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_normalise_node_gives_autograds_bits(seed):
    """normalise's one-node backward gives the bits autograd gives for the same ops recorded one
    by one, zero rows included (finite there: the row is divided by 1)."""
    from hrn_hw.reference.hashing import _plain_normalise
    g = torch.Generator().manual_seed(seed)
    n = (1, 3, 16, 40)[seed % 4]
    phi0 = torch.randn(n, 300, generator=g) * torch.rand(n, 1, generator=g) * 10
    phi0[seed % n] = 0
    grad = torch.randn(n, 300, generator=g)
    got, want = phi0.clone().requires_grad_(), phi0.clone().requires_grad_()
    out = normalise(got)
    out.backward(grad)
    out_ref = _plain_normalise(want)
    out_ref.backward(grad)
    assert torch.equal(out, out_ref) and torch.equal(got.grad, want.grad)
    assert torch.isfinite(got.grad).all()
    assert torch.equal(got.grad[seed % n], grad[seed % n])   # a zero row is divided by 1


@pytest.mark.parametrize("shape", [(5, 16, 10, 10), (3, 1, 28, 28), (1, 4, 3, 3)])
def test_feature_hash_node_gives_autograds_bits(shape):
    """feature_hash's one-node backward (sign times the bucket's gradient) equals autograd's
    gradient of the same ops recorded one by one."""
    from hrn_hw.reference.hashing import _plain_feature_hash, hash_tables
    g = torch.Generator().manual_seed(len(shape) + shape[0])
    y0 = torch.randn(*shape, generator=g)
    grad = torch.randn(shape[0], 50, generator=g)
    got, want = y0.clone().requires_grad_(), y0.clone().requires_grad_()
    out = feature_hash(got, 777, 50)
    out.backward(grad)
    buckets, signs = hash_tables(777, y0[0].numel(), 50)
    out_ref = _plain_feature_hash(want.reshape(shape[0], -1), buckets, signs, 50)
    out_ref.backward(grad)
    assert torch.equal(out, out_ref) and torch.equal(got.grad, want.grad)
