"""The golden model: integer inference of a QuantModel, the definition of the hardware's bits.

Per sample (docs/fixed_point.md): hash the map with phi_k (exact), normalise with the integer
1/sqrt, project on every initialised unit's basis, select the unused unit of largest energy
(lowest index on ties), take the residue, add it to the embedding, and run the unit when one
more selection follows. Samples are processed in groups of the same (unit, map) for speed; the
result per sample does not depend on the grouping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from hrn_hw import layers as layer_kinds
from hrn_hw.export.ir import INPUT_FMT, QuantModel
from hrn_hw.fixedpoint import ops
from hrn_hw.fixedpoint.fmt import SatCounter, convert
from hrn_hw.reference.hashing import hash_matrix


@dataclass
class GoldenResult:
    embedding: np.ndarray        # [N, s] integers, emb_fmt
    routes: np.ndarray           # [N, d] unit per step, -1 after the sample stopped
    logits: np.ndarray           # [N, max_classes] integers of each head's out format, 0-padded
    saturations: SatCounter = field(default_factory=SatCounter)


@lru_cache(maxsize=256)
def hash_matrix_int(seed: int, n: int, s: int) -> np.ndarray:
    """Signed one-hot [n, s] int64 with phi = y_flat @ P (docs/design.md index hash)."""
    mat = hash_matrix(seed, n, s).numpy().astype(np.int64)
    mat.setflags(write=False)
    return mat


def feature_hash(y: np.ndarray, seed: int, s: int) -> np.ndarray:
    """phi(y) [n, s] of integer maps [n, C, H, W] (exact)."""
    flat = y.reshape(len(y), -1)
    return ops.matmul_exact(flat, hash_matrix_int(seed, flat.shape[1], s))


def run_unit(qm: QuantModel, unit: int, y: np.ndarray, frac: int, sat: SatCounter) -> np.ndarray:
    """A unit's layers on integer maps [n, C, H, W] with `frac` fraction bits."""
    u = qm.units[unit]
    x, fmt = ops.fold_channels(y, u.in_channels), None
    for j, layer in enumerate(u.layers):
        x, frac, fmt = layer_kinds.of(layer).golden(layer, x, frac, fmt, sat, f"unit{unit}.{j}.out")
    return x


def run_head(qm: QuantModel, task: int, emb: np.ndarray, sat: SatCounter) -> np.ndarray:
    """Head `task` on integer embeddings [n, s] (emb_fmt); returns its output integers."""
    z, frac = emb, qm.emb_fmt.frac
    for j, layer in enumerate(qm.heads[task].layers):
        name = f"head{task}.{j}.out"
        z = ops.dense(z, frac, layer.weight, layer.w_fmt.frac, layer.bias, layer.b_fmt.frac,
                      layer.out_fmt, sat, name)
        if layer.act is not None:
            z = ops.leaky_relu(z, layer.out_fmt, layer.act.alpha, layer.act.alpha_frac, sat, name)
        frac = layer.out_fmt.frac
    return z


def check_inputs(qm: QuantModel, pixels: np.ndarray, tasks: np.ndarray) -> None:
    if pixels.dtype != np.uint8 or pixels.shape[1:] != tuple(qm.input_shape):
        raise ValueError(f"pixels must be uint8 [N, {', '.join(map(str, qm.input_shape))}], "
                         f"got {pixels.dtype} {list(pixels.shape)}")
    if len(tasks) != len(pixels) or (len(tasks) and (tasks.min() < 0 or tasks.max() >= len(qm.heads))):
        raise ValueError(f"tasks must be {len(pixels)} ids in [0, {len(qm.heads)})")


def run(qm: QuantModel, pixels: np.ndarray, tasks: np.ndarray) -> GoldenResult:
    """Integer inference of a batch: uint8 pixels [N, C, H, W] and task ids [N]."""
    tasks = np.asarray(tasks, dtype=np.int64)
    check_inputs(qm, pixels, tasks)
    n, M, s = len(pixels), qm.num_units, qm.s
    sat = SatCounter()
    init = qm.initialised
    used = np.zeros((n, M), dtype=bool)
    emb_acc = np.zeros((n, s), dtype=np.int64)
    routes = np.full((n, qm.d), -1, dtype=np.int64)
    # groups: (sample indices, maps, map frac, hash index)
    groups = [(np.arange(n), pixels.astype(np.int64), INPUT_FMT.frac, 0)] if n else []
    for k in range(qm.d):
        if not groups:
            break
        idx = np.concatenate([g[0] for g in groups])
        phi = np.concatenate([feature_hash(y, qm.hash_seeds[hid], s) for _, y, _, hid in groups])
        h = ops.normalise(phi, qm.norm_k, qm.h_fmt, sat)
        coef, energy = ops.project(h, qm.h_fmt, qm.bases, qm.basis_fmt, qm.coef_fmt, sat)
        allowed = ~used[idx] & init[None, :]
        sel, ok = ops.select(energy, allowed)
        rows = np.nonzero(ok)[0]
        r = ops.residue(h[rows], qm.h_fmt, qm.bases[sel[rows]], coef[rows, sel[rows]], qm.basis_fmt,
                        qm.coef_fmt, qm.residue_fmt, sat)
        emb_acc[idx[rows]] += r
        routes[idx[rows], k] = sel[rows]
        used[idx[rows], sel[rows]] = True
        if k == qm.d - 1:
            break
        rr = np.einsum("ij,ij->i", r, r)
        left = (~used[idx[rows]] & init[None, :]).any(axis=1)
        go = rows[(rr >= qm.stop_threshold) & left]
        groups = _next_groups(qm, groups, go, sel, sat)
    emb = convert(emb_acc, qm.residue_fmt.frac, qm.emb_fmt, sat, "embedding")
    logits = np.zeros((n, qm.max_classes), dtype=np.int64)
    for t in np.unique(tasks):
        rows = np.nonzero(tasks == t)[0]
        out = run_head(qm, int(t), emb[rows], sat)
        logits[rows, :out.shape[1]] = out
    return GoldenResult(emb, routes, logits, sat)


def _next_groups(qm: QuantModel, groups: list, go: np.ndarray, sel: np.ndarray, sat: SatCounter) -> list:
    """Run each continuing sample's selected unit, one call per (unit, source group)."""
    out, offset = [], 0
    for gidx, y, frac, _ in groups:
        part = go[(go >= offset) & (go < offset + len(gidx))]
        local = part - offset
        for unit in np.unique(sel[part]):
            pick = local[sel[part] == unit]
            maps = run_unit(qm, int(unit), y[pick], frac, sat)
            out.append((gidx[pick], maps, qm.units[unit].out_fmt.frac, int(unit) + 1))
        offset += len(gidx)
    return out
