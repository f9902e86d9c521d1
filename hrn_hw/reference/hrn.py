"""The hash-routed network: unit pool, bases, hash seeds, per-task heads, and two routing paths.

Depth semantics (docs/design.md section 2): step 0 hashes the input with phi_0 and selects u1; step k
runs u_k on the current map, hashes its output with phi_{u_k + 1} and selects u_{k+1} among the
unused units. At most d selections, d residues and d - 1 unit calls; H(x) is the sum of residues.
A sample stops when ||r|| < tau_d or no selectable unit remains; a unit is only run when a
further selection will follow it.

`route_batched` groups samples by (selected unit, map shape) at each step; `route_oracle`
follows the algorithms literally one sample at a time. With frozen bases (eval mode) both give
identical routes and embeddings equal within float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hrn_hw.config import Config
from hrn_hw.device import host_array
from hrn_hw.reference import native
from hrn_hw.reference.bases import BasisPool
from hrn_hw.reference.hashing import feature_hash, hash_add_, hash_tables, normalise, normalised_hash
from hrn_hw.reference.units import ConvUnit, fold_channels


@dataclass
class Routing:
    """What one routed batch produced."""

    embedding: torch.Tensor      # [B, s], sum of residues
    routes: torch.Tensor         # [B, d] selected unit per step, -1 where the sample had stopped
    residue_norms: torch.Tensor  # [B, d] ||r_k||_2, 0 where stopped
    residue_l1: torch.Tensor     # [B] sum_k ||r_k||_1 (Eq. 6)


def pixels_to_input(x: torch.Tensor) -> torch.Tensor:
    """Raw 8-bit pixels -> p / 256 (exact in fixed point; no mean/std normalisation)."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 256.0
    return x.to(torch.float32)


def _cat(tensors: list) -> torch.Tensor | None:
    """torch.cat without the copy for a single tensor (None for a list of None)."""
    if len(tensors) == 1 or tensors[0] is None:
        return tensors[0]
    return torch.cat(tensors)


def _cat_np(arrays: list) -> np.ndarray:
    """np.concatenate without the copy for a single array."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class Head(nn.Module):
    """One task's classifier on H(x): Linear -> act -> dropout per hidden layer, then Linear."""

    def __init__(self, in_features: int, hidden: tuple, num_classes: int, activation: str, dropout: float):
        super().__init__()
        sizes = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)
        self.slope = 0.01 if activation == "leaky_relu" else 0.0
        self.dropout = dropout

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            z = F.leaky_relu(layer(z), self.slope)
            if self.training:            # (F.dropout returns z itself in eval)
                z = F.dropout(z, self.dropout, True)
        return self.out(z)


def draw_seed(model_seed: int, hash_index: int, taken: set[int]) -> int:
    """Hash seed of hash function `hash_index`: derived from the model seed (stateless, so a
    resumed run draws the same seeds), redrawn until distinct from the seeds already taken."""
    rng = np.random.default_rng([model_seed, hash_index])
    while True:
        seed = int(rng.integers(0, 2**32, dtype=np.uint64))
        if seed not in taken:
            return seed


def _frozen_step(h, flat_bases_t, flat_bases, unit_ids, blocked, idx, k: int, emb, l1, routes, norms, one,
                 tau: float, M: int, m: int, last: bool):
    """One step of `HRN.route_frozen` after hashing, on its buffers, in place: normalise h,
    select (`BasisPool.select_frozen`: every row has a candidate), take the residue, scatter it
    into emb, l1, routes and norms at the step's samples `idx`; unless `last`, mark the selected
    units used in `blocked` and return each row's next key (its unit, or M where it stops)."""
    n = h.shape[0]
    norm = h.norm(dim=1, keepdim=True)
    h.div_(torch.where(norm > 0, norm, one))
    coef = torch.mm(h, flat_bases_t).view(n, M, m)                  # (what h @ B^T runs)
    energy = coef.square().sum(-1).masked_fill_(blocked if k == 0 else blocked[idx], -1.0)
    sel = energy.max(dim=1)[1]                                      # first (lowest) index on ties
    mine = sel[:, None] == unit_ids
    r = h.sub_(torch.mm(coef.mul_(mine[..., None]).flatten(1), flat_bases))
    rn = r.norm(dim=1)
    emb.index_add_(0, idx, r)
    l1.index_add_(0, idx, r.abs().sum(1))
    routes[idx, k] = sel
    norms[idx, k] = rn
    if last:
        return None
    blocked[idx, sel] = True
    return torch.where(rn >= tau, sel, M)


class HRN(nn.Module):
    """Hash-routed network built from a Config."""

    def __init__(self, cfg: Config, seed: int = 0, unit_groups: list[int] | None = None,
                 hash_seeds: list[int] | None = None):
        super().__init__()
        self.cfg = cfg
        p = cfg.hrn
        self.s, self.d, self.tau_d = p.hash_size, p.depth, p.tau_depth
        groups = cfg.unit_group_sequence() if unit_groups is None else list(unit_groups)
        self.unit_groups: list[int] = []
        self.units = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.pool = BasisPool(0, p.basis_size, p.hash_size, p.aging_start, p.aging_rate,
                              p.tau_empty, p.tau_expand, p.basis_update, p.basis_lock, p.orthogonal_bases,
                              p.avoid_task_energy)
        self.seed = seed
        if hash_seeds is None:
            hash_seeds = [draw_seed(seed, 0, set())]
        self.register_buffer("hash_seeds", torch.tensor(hash_seeds[:1], dtype=torch.int64))
        for k, g in enumerate(groups):
            self._add_unit(g, None if len(hash_seeds) <= k + 1 else hash_seeds[k + 1])

    # ---- structure ------------------------------------------------------------------------

    @property
    def num_units(self) -> int:
        return len(self.units)

    def _add_unit(self, group: int, hash_seed: int | None) -> None:
        spec = self.cfg.units[group]
        dev = self.hash_seeds.device
        self.units.append(ConvUnit(spec.in_channels, list(spec.layers)).to(dev))
        self.unit_groups.append(group)
        self.pool.add_units(1)
        if hash_seed is None:
            hash_seed = draw_seed(self.seed, len(self.hash_seeds), set(self.hash_seeds.tolist()))
        self.hash_seeds = torch.cat([self.hash_seeds, torch.tensor([hash_seed], device=dev)])

    def add_units(self, n: int) -> None:
        """Add n empty units with fresh hash seeds; unit j of the extras takes group j mod groups."""
        for _ in range(n):
            self._add_unit(len(self.unit_groups) % len(self.cfg.units), None)

    def add_head(self, num_classes: int) -> int:
        """Add the head of a new task; returns its index."""
        h = self.cfg.head
        head = Head(self.s, h.hidden, num_classes, h.activation, h.dropout).to(self.hash_seeds.device)
        self.heads.append(head)
        return len(self.heads) - 1

    def protected(self) -> list[int]:
        """Units whose weights training leaves alone (stable profile, `hrn.protect_units`): the
        locked ones (initialised by an earlier task)."""
        if not self.cfg.hrn.protect_units:
            return []
        return torch.nonzero(self.pool.locked).flatten().tolist()

    def train(self, mode: bool = True) -> "HRN":
        """nn.Module.train, with protected units kept in eval mode (their BatchNorm statistics
        stay as their task left them)."""
        super().train(mode)
        if mode:
            for u in self.protected():
                self.units[u].eval()
        return self

    def seed_of(self, hash_index: int) -> int:
        return int(self.hash_seeds[hash_index])

    # ---- routing --------------------------------------------------------------------------

    def _grad_scaling(self) -> bool:
        return self.training and self.cfg.hrn.grad_scaling

    def _grad_scale(self, residue_norm: torch.Tensor) -> torch.Tensor | None:
        """Eq. 7 factor min(1, ||r||) of the residue that selected the unit, or None when off."""
        if not self._grad_scaling():
            return None
        return residue_norm.detach().clamp(max=1.0)

    def route_batched(self, x: torch.Tensor) -> Routing:
        """Route a batch, grouping samples by (selected unit, map shape) at each step. The
        bookkeeping (sample indices, selections, free units) is numpy; tensors carry only
        what the loss differentiates."""
        x = pixels_to_input(x)
        B, train = x.shape[0], self.training
        # the units each sample may still select: unused (and initialised, on frozen bases)
        free = self.pool.selectable(np.zeros((B, self.num_units), dtype=bool), train)
        n_free = int(free[:1].sum())                     # (every row starts the same)
        groups = [(np.arange(B), x, 0)]                 # (sample indices, maps, hash index)
        steps = []                                  # (indices, step, selected, ok, residues, norms)
        seeds = self.hash_seeds.tolist()
        for k in range(self.d):
            idx = _cat_np([g[0] for g in groups])
            h = normalise(_cat([feature_hash(y, seeds[hid], self.s) for _, y, hid in groups]))
            sel, ok, r = self._select(h, free[idx], train)
            rn = r.norm(dim=1)
            rn_host = host_array(rn)
            steps.append((idx, k, sel, ok, r, rn_host))
            # every sample still here has now selected k + 1 units: any left for another step?
            if k == self.d - 1 or k + 1 >= n_free:
                break
            free[idx, sel] = False          # (the row of a sample that selected nothing is moot)
            go = ok & (rn_host >= self.tau_d)
            if not go.any():
                break
            groups = self._run_units(groups, go, sel, rn)
        return self._collect(x, steps)

    def _select(self, h: torch.Tensor, free: np.ndarray, train: bool):
        """One step's selection (sel, ok: numpy; residues) among the `free` units [n, M]; in
        training with Alg. 3's initialisation, then the basis maintenance (Alg. 4 and 2)."""
        if not train:
            sel, ok, r = self.pool.select_frozen(h, torch.from_numpy(free).to(h.device))[:3]
            return host_array(sel), host_array(ok), r
        sel, ok, r, coef = self.pool.select_train(h, ~free)
        if ok.all():                                      # the usual case: no masking copies
            self.pool.maintain(sel, h.detach(), coef)
        else:
            self.pool.maintain(sel[ok], h.detach()[torch.from_numpy(ok).to(h.device)], coef[ok])
        return sel, ok, r

    def _collect(self, x: torch.Tensor, steps: list) -> Routing:
        """Scatter every step's residues, routes and norms back to sample order: the embedding is
        one index_add of the steps' residues in step order (each row summed in that order)."""
        B, dev = x.shape[0], x.device
        idx, sel, ok, rn = (_cat_np([st[i] for st in steps]) for i in (0, 2, 3, 5))
        r = _cat([st[4] for st in steps])
        idx_t = torch.from_numpy(idx).to(dev)
        emb = x.new_zeros(B, self.s).index_add_(0, idx_t, r)   # row by row in step order
        l1 = x.new_zeros(B).index_add(0, idx_t, r.abs().sum(1))
        ks = _cat_np([np.full(len(st[0]), st[1]) for st in steps])
        routes = np.full((B, self.d), -1, dtype=np.int64)
        norms = np.zeros((B, self.d), dtype=np.float32)
        if not ok.all():
            idx, ks, sel, rn = idx[ok], ks[ok], sel[ok], rn[ok]
        routes[idx, ks] = sel
        norms[idx, ks] = rn
        return Routing(emb, torch.from_numpy(routes).to(dev), torch.from_numpy(norms).to(dev), l1)

    def _run_units(self, groups, go: np.ndarray, sel: np.ndarray, rn: torch.Tensor):
        """Regroup the continuing samples by (selected unit, map shape) and run each unit once."""
        units = list(self.units._modules.values())      # (ModuleList indexing is slow)
        buckets = self._regroup(groups, go, sel, rn if self._grad_scaling() else None, units)
        out = []
        for (unit, _), parts in sorted(buckets.items(), key=lambda kv: kv[0][0]):
            pidx, maps, scale = zip(*parts)
            out.append((_cat_np(pidx), units[unit](_cat(maps), self._grad_scale(_cat(scale))), unit + 1))
        return out

    def _regroup(self, groups, go: np.ndarray, sel: np.ndarray, scales, modules):
        """{(unit, map shape): [(sample indices, maps, scales or None)]}: every group's continuing
        rows (`go`; `sel`, `scales` per row of the step's concatenation) split by selected unit,
        in sample order; maps folded to the units' channels first where those agree."""
        M = self.num_units
        key = np.where(go, sel, M)                       # M: the sample stops here
        buckets: dict[tuple, list] = {}
        offset = 0
        for gidx, y, _ in groups:
            n = len(gidx)
            g_key = key[offset:offset + n]
            counts = np.bincount(g_key, minlength=M + 1)
            rows = np.argsort(g_key, kind="stable")[:n - counts[M]]   # continuing rows, by unit
            units = np.flatnonzero(counts[:M]).tolist()
            sizes = counts[units].tolist()
            shape = tuple(y.shape[1:])     # the grouping key (and BN batch) stays the map's shape
            in_ch = {modules[u].in_channels for u in units}
            if len(in_ch) == 1:   # fold the channels before the copy (per sample, so the same sums)
                y = fold_channels(y, in_ch.pop())
            rows_t = torch.from_numpy(rows).to(y.device)
            parts = [np.split(gidx[rows], np.cumsum(sizes)[:-1]), y.index_select(0, rows_t).split(sizes),
                     [None] * len(units) if scales is None
                     else scales[offset:offset + n].index_select(0, rows_t).split(sizes)]
            for unit, idx_part, maps, scale in zip(units, *parts):
                # every part of a bucket folded to its unit's channels (another group of the same
                # map shape may have been folded before the copy)
                buckets.setdefault((unit, shape), []).append(
                    [idx_part, fold_channels(maps, modules[unit].in_channels), scale])
            offset += n
        return buckets

    def route_oracle(self, x: torch.Tensor) -> Routing:
        """Route one sample at a time, following Alg. 1-4 literally (bases update per sample)."""
        x = pixels_to_input(x)
        parts = [self._route_one(x[b:b + 1]) for b in range(x.shape[0])]
        return Routing(*(torch.cat(t) for t in zip(*parts)))

    def _route_one(self, y: torch.Tensor):
        train = self.training
        free = self.pool.selectable(np.zeros((1, self.num_units), dtype=bool), train)
        emb = y.new_zeros(1, self.s)
        routes = torch.full((1, self.d), -1, dtype=torch.long, device=y.device)
        norms = y.new_zeros(1, self.d)
        l1 = y.new_zeros(1)
        hash_index = 0
        for k in range(self.d):
            h = normalised_hash(y, self.seed_of(hash_index), self.s)
            sel, ok, r = self._select(h, free, train)      # (maintains the bases in training)
            if not ok[0]:
                break
            unit = int(sel[0])
            rn = r.norm(dim=1)
            emb, l1 = emb + r, l1 + r.abs().sum(1)
            routes[0, k], norms[0, k] = unit, rn[0].detach()
            free[0, unit] = False
            if k == self.d - 1 or float(rn[0].detach()) < self.tau_d or not free.any():
                break
            y = self.units[unit](y, self._grad_scale(rn))
            hash_index = unit + 1
        return emb, routes, norms, l1

    @torch.no_grad()
    def route_single_eval(self, x: torch.Tensor) -> Routing:
        """One sample on frozen bases without autograd (inference): `route_oracle` in eval mode
        with the selection written out on Python lists (few tensor ops per step). Same routes,
        embeddings equal within float rounding (tested)."""
        assert not self.training and x.shape[0] == 1
        y = pixels_to_input(x)
        pool, s, d, M, m = self.pool, self.s, self.d, self.num_units, self.pool.m
        cand = pool.initialised().tolist()                 # eval: initialised and unused
        bases = pool.bases
        flat_bases = bases.view(M * m, s)
        seeds = self.hash_seeds.tolist()
        units = list(self.units._modules.values())
        routes, norms, rs = [-1] * d, [0.0] * d, []
        hash_index = 0
        for k in range(d):
            flat = y.reshape(-1)
            buckets, signs = hash_tables(seeds[hash_index], flat.shape[0], s, flat.device)
            phi = hash_add_(flat.new_zeros(1, s), flat[None], buckets, signs)[0]
            norm = phi.norm()
            h = phi / norm if float(norm) > 0 else phi      # normalised_hash for one sample
            coef = flat_bases @ h
            energy = coef.view(M, m).square().sum(1).tolist()
            unit, best = -1, -1.0
            for u in range(M):                             # first maximum: ties to the lowest index
                if cand[u] and energy[u] > best:
                    unit, best = u, energy[u]
            if unit < 0:
                break
            r = h - coef[unit * m:(unit + 1) * m] @ bases[unit]
            rs.append(r)
            rn = float(r.norm())
            routes[k], norms[k] = unit, rn
            cand[unit] = False
            if k == d - 1 or rn < self.tau_d or not any(cand):
                break
            y = units[unit](y)
            hash_index = unit + 1
        if rs:
            r = torch.stack(rs)
            emb, l1 = r.sum(0, keepdim=True), r.abs().sum().reshape(1)
        else:
            emb, l1 = y.new_zeros(1, s), y.new_zeros(1)
        return Routing(emb, torch.tensor([routes], device=x.device), torch.tensor([norms], device=x.device), l1)

    def route(self, x: torch.Tensor, oracle: bool = False) -> Routing:
        """Route a batch. Eval without autograd takes the inference path (`_route_inference`);
        a single eval sample takes the per-sample path, which is faster there and gives the same
        routes and embeddings on frozen bases. An empty batch routes nothing."""
        if x.shape[0] == 0:
            return self._no_routes(0, x.device)
        if not (oracle or self.training or torch.is_grad_enabled()):
            return self._route_inference(x)
        if oracle or (not self.training and x.shape[0] == 1):
            return self.route_oracle(x)
        return self.route_batched(x)

    def _route_inference(self, x: torch.Tensor) -> Routing:
        """Eval without autograd: `route_frozen` (the per-sample path for a single sample) in
        inference mode (no version counters or view tracking), returning ordinary tensors."""
        if x.shape[0] == 1:
            with torch.inference_mode():
                routing = self.route_single_eval(x)
            return Routing(*(t.clone() for t in vars(routing).values()))
        # the outputs are made outside inference mode (ordinary tensors) and filled inside it
        dev = x.device
        routing = self._no_routes(x.shape[0], dev)
        with torch.inference_mode():
            self.route_frozen(x, routing)
        return routing

    def _no_routes(self, B: int, dev: torch.device) -> Routing:
        """The Routing of B samples that selected nothing: zero embeddings, norms and L1, -1 routes."""
        f32 = torch.float32
        return Routing(torch.zeros(B, self.s, dtype=f32, device=dev),
                       torch.full((B, self.d), -1, dtype=torch.long, device=dev),
                       torch.zeros(B, self.d, dtype=f32, device=dev), torch.zeros(B, dtype=f32, device=dev))

    @torch.no_grad()
    def route_frozen(self, x: torch.Tensor, out: Routing | None = None) -> Routing:
        """`route_batched` in eval mode without autograd (frozen bases), with fewer tensor ops and
        the same arithmetic (identical routes, bit-identical embeddings; tested): every sample
        starts with the same selectable units and drops one per step, so every sample still
        routing has a candidate (no `ok` masks); one hash buffer per step (no concatenation);
        normalisation, projection and residue in place; the selection of `BasisPool.select_frozen`
        written out; each step's residues, routes and norms scattered into `out` (zero / -1
        filled, [B, s], [B, d], [B, d], [B]) as they come."""
        assert not self.training
        B, dev = x.shape[0], x.device
        if out is None:
            out = self._no_routes(B, dev)
        # pixels_to_input in one pass where the division's result is float32 (exact either way)
        if x.dtype == torch.uint8 and torch.get_default_dtype() == torch.float32:
            x = x / 256.0
        else:
            x = pixels_to_input(x)
        M, m, s, d = self.num_units, self.pool.m, self.s, self.d
        init = self.pool.initialised()
        n_free = int(init.sum())
        if n_free == 0:                      # nothing selectable: no route (as route_batched)
            return out
        flat_bases = self.pool.bases.flatten(0, 1)
        flat_bases_t = flat_bases.T
        unit_ids = torch.arange(M, device=dev)
        one = x.new_ones(())
        blocked = init.logical_not().expand(B, M).clone()    # ~selectable, per sample
        seeds = self.hash_seeds.tolist()
        units = list(self.units._modules.values())
        runners: dict = {}                    # unit -> its frozen_runner, made when first needed
        twins = native.nodes()
        step = _frozen_step if twins is None else twins.frozen_step
        idx = torch.arange(B, device=dev)     # the step's samples, in the order of its rows
        groups = [(x, 0, B)]                  # (maps, hash index, rows), in row order
        for k in range(d):
            n = idx.shape[0]
            h = x.new_zeros(n, s)
            offset = 0
            for y, hid, rows in groups:       # feature_hash of every group into its rows of h
                flat = y.reshape(rows, -1)
                buckets, signs = hash_tables(seeds[hid], flat.shape[1], s, dev)
                into = h if rows == n else h.narrow(0, offset, rows)
                hash_add_(into, flat, buckets, signs)
                offset += rows
            last = k == d - 1 or k + 1 >= n_free
            key = step(h, flat_bases_t, flat_bases, unit_ids, blocked, idx, k, out.embedding,
                       out.residue_l1, out.routes, out.residue_norms, one, self.tau_d, M, m, last)
            if last:
                break
            groups, idx = self._regroup_frozen(groups, idx, key, units, runners)
            if not groups:
                break
        return out

    def _regroup_frozen(self, groups, idx, key, units, runners):
        """`_run_units` for `route_frozen`: the same groups (rows by selected unit, in sample
        order; buckets by (unit, map shape), ordered by unit) and unit calls; returns the next
        groups and their samples. `key` per row: the selected unit, M where the sample stops."""
        M = len(units)
        buckets: dict[tuple, list] = {}
        offset = 0
        for y, _, n in groups:
            g_key = key if n == key.shape[0] else key.narrow(0, offset, n)
            g_idx = idx if n == idx.shape[0] else idx.narrow(0, offset, n)
            offset += n
            counts = torch.bincount(g_key, minlength=M + 1).tolist()
            present = [u for u in range(M) if counts[u]]
            if not present:
                continue
            in_ch = {units[u].in_channels for u in present}
            shape = tuple(y.shape[1:])     # the grouping key stays the map's shape
            if len(in_ch) == 1:   # fold the channels before the copy (per sample, so the same sums)
                y = fold_channels(y, in_ch.pop())
            if counts[present[0]] == n:     # one unit takes the whole group: no reordering
                buckets.setdefault((present[0], shape), []).append(
                    (g_idx, fold_channels(y, units[present[0]].in_channels)))
                continue
            rows = torch.argsort(g_key, stable=True)
            if counts[M]:
                rows = rows[:n - counts[M]]
            sizes = [counts[u] for u in present]
            for unit, idx_part, maps in zip(present, g_idx.index_select(0, rows).split(sizes),
                                            y.index_select(0, rows).split(sizes)):
                buckets.setdefault((unit, shape), []).append((idx_part, fold_channels(maps, units[unit].in_channels)))
        out, ids = [], []
        for (unit, _), parts in sorted(buckets.items(), key=lambda kv: kv[0][0]):
            ids += [p[0] for p in parts]
            maps = _cat([p[1] for p in parts])
            run = runners.get(unit) or runners.setdefault(unit, units[unit].frozen_runner())
            out.append((run(maps), unit + 1, maps.shape[0]))
        return out, (_cat(ids) if ids else idx[:0])

    def forward(self, x: torch.Tensor, task: int, oracle: bool = False):
        """Logits of task `task`'s head and the routing record."""
        routing = self.route(x, oracle)
        return self.heads[task](routing.embedding), routing
