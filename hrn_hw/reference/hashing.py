"""Index feature hashing shared by every layer of hrn-hw (docs/design.md section 2).

Hash function k with 32-bit seed maps flat index j of a CHW map to
u = fmix32(fmix32(j) ^ seed), bucket = (u * s) >> 32, sign = +1 if u is even else -1.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from hrn_hw.reference import native

MASK32 = np.uint64(0xFFFFFFFF)


def fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser on an array of non-negative integers (< 2**32)."""
    h = np.asarray(x, dtype=np.uint64) & MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & MASK32
    h ^= h >> np.uint64(16)
    return h


def index_hash(seed: int, n: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Buckets (int64 in [0, s)) and signs (+1/-1 int8) of flat indices 0..n-1 under `seed`."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"hash seed must be a 32-bit unsigned integer, got {seed}")
    u = fmix32(fmix32(np.arange(n, dtype=np.uint64)) ^ np.uint64(seed))
    buckets = ((u * np.uint64(s)) >> np.uint64(32)).astype(np.int64)
    signs = np.where((u & np.uint64(1)) == 0, 1, -1).astype(np.int8)
    return buckets, signs


@functools.lru_cache(maxsize=256)
@torch.inference_mode(False)     # cached: ordinary tensors even when first asked in inference mode
def _hash_tables_cpu(seed: int, n: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    buckets, signs = index_hash(seed, n, s)
    return torch.from_numpy(buckets), torch.from_numpy(signs.astype(np.float32))


_device_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def hash_tables(seed: int, n: int, s: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(buckets int64 [n], signs float32 [n]) of hash function `seed`, cached per device."""
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if device.type == "cpu":
        return _hash_tables_cpu(seed, n, s)
    key = (seed, n, s, str(device))
    if key not in _device_cache:
        with torch.inference_mode(False):
            _device_cache[key] = tuple(t.to(device) for t in _hash_tables_cpu(seed, n, s))
    return _device_cache[key]


def hash_matrix(seed: int, n: int, s: int) -> torch.Tensor:
    """Dense signed one-hot matrix P [n, s] with phi(y) = y_flat @ P (for tests and export)."""
    buckets, signs = _hash_tables_cpu(seed, n, s)
    mat = torch.zeros(n, s, dtype=torch.float32)
    mat[torch.arange(n), buckets] = signs
    return mat


def hash_add_(out: torch.Tensor, flat: torch.Tensor, buckets: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """out [n, s] += the hashes of flat's rows [n, L], in place: index_add_ of flat * signs, or
    the compiled loop that makes the same additions in the same order (CPU float32 without
    autograd, where built); returns out."""
    twins = native.nodes()
    if (twins is not None and out.device.type == "cpu" and out.dtype == torch.float32
            and flat.dtype == torch.float32 and out.is_contiguous()
            and not (torch.is_grad_enabled() and (flat.requires_grad or out.requires_grad))):
        twins.hash_add_(out, flat, buckets, signs)
        return out
    return out.index_add_(1, buckets, flat * signs)


def _plain_feature_hash(flat: torch.Tensor, buckets: torch.Tensor, signs: torch.Tensor, s: int) -> torch.Tensor:
    return hash_add_(flat.new_zeros(flat.shape[0], s), flat, buckets, signs)


class _FeatureHash(torch.autograd.Function):
    """`_plain_feature_hash` of y's flattened rows as one autograd node: the gradient of map
    entry j is sign_j times the gradient of its bucket (autograd's index_select and product)."""

    @staticmethod
    def forward(ctx, y, buckets, signs, s):
        ctx.save_for_backward(buckets, signs)
        ctx.shape = y.shape
        return _plain_feature_hash(y.reshape(y.shape[0], -1), buckets, signs, s)

    @staticmethod
    def backward(ctx, grad):
        buckets, signs = ctx.saved_tensors
        return (grad.index_select(1, buckets) * signs).view(ctx.shape), None, None, None


def feature_hash(y: torch.Tensor, seed: int, s: int) -> torch.Tensor:
    """phi(y): hash a batch of maps [B, ...] (flattened in CHW order) to [B, s] (differentiable)."""
    buckets, signs = hash_tables(seed, math.prod(y.shape[1:]), s, y.device)
    if y.requires_grad and torch.is_grad_enabled():
        twins = native.nodes()
        if twins is not None:
            return twins.feature_hash(y, buckets, signs, s)
        return _FeatureHash.apply(y, buckets, signs, s)
    return _plain_feature_hash(y.reshape(y.shape[0], -1), buckets, signs, s)


def _normalise_parts(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(phi / den, ||phi|| per row, den): den is the norm, or 1 for an all-zero row."""
    norm = phi.norm(dim=1, keepdim=True)
    den = torch.where(norm > 0, norm, 1.0)
    return phi / den, norm, den


def _plain_normalise(phi: torch.Tensor) -> torch.Tensor:
    return _normalise_parts(phi)[0]


class _Normalise(torch.autograd.Function):
    """`_plain_normalise` as one autograd node. Its backward is autograd's own chain for those
    ops (division, where, vector norm) written out in the same order, so the gradient has the
    same bits (tested), from one node instead of four."""

    @staticmethod
    def forward(ctx, phi):
        out, norm, den = _normalise_parts(phi)
        ctx.save_for_backward(phi, norm, den, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        phi, norm, den, out = ctx.saved_tensors
        grad_norm = torch.where(norm > 0, (-grad * (out / den)).sum(1, keepdim=True), 0.0)
        return grad / den + (phi / norm * grad_norm).masked_fill_(norm == 0, 0)


def normalise(phi: torch.Tensor) -> torch.Tensor:
    """phi / ||phi||_2 per row; an all-zero row stays 0 (with a finite gradient)."""
    if phi.requires_grad and torch.is_grad_enabled():
        twins = native.nodes()
        return _Normalise.apply(phi) if twins is None else twins.normalise(phi)
    return _plain_normalise(phi)


def normalised_hash(y: torch.Tensor, seed: int, s: int) -> torch.Tensor:
    """h = phi(y) / ||phi(y)||_2 per sample; an all-zero phi gives h = 0."""
    return normalise(feature_hash(y, seed, s))
