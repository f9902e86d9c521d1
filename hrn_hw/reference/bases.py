"""The pool's orthonormal bases and the paper's basis algorithms.

- selection with initialisation of empty units (Alg. 3, tau_empty),
- expansion (Alg. 4, tau_expand, at most m vectors),
- the aging update (Alg. 2: per-vector countdown, geometric age threshold).

Routing compares squared projection energies ||B_u h||^2; ties go to the lowest unit index.
Training-only steps (initialisation, expansion, aging) never run in eval mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from torch.autograd import Function

from hrn_hw.device import host_array
from hrn_hw.reference import native


class _ProjectOut(Function):
    """r = h - (coefficients masked to each sample's unit) @ bases: h minus its projection on the
    selected unit's basis. The projector I - B_u^T B_u is symmetric, so the gradient is the same
    projection of the incoming gradient: one node for what autograd records as seven, with the
    same products and sums (the same bits)."""

    @staticmethod
    def forward(ctx, h, coef_all, mine, flat_bases):
        ctx.save_for_backward(mine, flat_bases)
        return h - (coef_all * mine[..., None]).flatten(1) @ flat_bases

    @staticmethod
    def backward(ctx, grad):
        mine, flat_bases = ctx.saved_tensors
        coef = (grad @ flat_bases.T).view(*mine.shape, -1)
        return grad - (coef * mine[..., None]).flatten(1) @ flat_bases, None, None, None


class BasisPool(nn.Module):
    """Bases [M, m, s] (zero rows where a unit has fewer than m vectors) and aging state."""

    def __init__(self, num_units: int, basis_size: int, hash_size: int, aging_start: int,
                 aging_rate: float, tau_empty: float, tau_expand: float, aging: bool = True,
                 lock_bases: bool = True, orthogonal_to_locked: bool = False, avoid_energy: float = 0.0):
        super().__init__()
        self.lock_bases = lock_bases     # False: a locked unit's basis still learns (hrn.basis_lock off)
        self.orthogonal_to_locked = orthogonal_to_locked   # stable profile: new vectors avoid locked spans
        self.avoid_energy = avoid_energy   # stable profile: new vectors avoid earlier tasks' hash subspace
        self._avoided = None             # (locked mask, moment version, orthonormal rows new vectors avoid)
        self._moment_version = 0
        self.recording = False           # training adds its hashes to the task's moment (set per epoch)
        self.m, self.s = basis_size, hash_size
        self.aging_start, self.aging_rate, self.aging = aging_start, aging_rate, aging
        self.tau_empty, self.tau_expand = tau_empty, tau_expand
        self.register_buffer("bases", torch.zeros(num_units, basis_size, hash_size))
        self.register_buffer("count", torch.zeros(num_units, dtype=torch.int64))
        self.register_buffer("age_threshold", torch.full((num_units,), float(aging_start), dtype=torch.float64))
        self.register_buffer("age_counter", torch.zeros(num_units, basis_size, dtype=torch.int64))
        self.register_buffer("locked", torch.zeros(num_units, dtype=torch.bool))
        if avoid_energy:
            # second moments of the normalised hashes routed in training (no samples): the task's
            # last epoch's so far, and the sum over finished tasks of each task's mean
            self.register_buffer("task_moment", torch.zeros(hash_size, hash_size, dtype=torch.float64))
            self.register_buffer("task_hashes", torch.zeros((), dtype=torch.int64))
            self.register_buffer("old_moment", torch.zeros(hash_size, hash_size, dtype=torch.float64))

    MOMENTS = ("task_moment", "task_hashes", "old_moment")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint from before `avoid_task_energy` has no hash moments: none recorded."""
        for name in self.MOMENTS:
            if hasattr(self, name):
                state_dict.setdefault(prefix + name, getattr(self, name).detach().clone().zero_())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_units(self) -> int:
        return self.bases.shape[0]

    def add_units(self, n: int) -> None:
        """Append n empty units."""
        dev = self.bases.device
        self.bases = torch.cat([self.bases, torch.zeros(n, self.m, self.s, device=dev)])
        self.count = torch.cat([self.count, torch.zeros(n, dtype=torch.int64, device=dev)])
        self.age_threshold = torch.cat([self.age_threshold,
                                        torch.full((n,), float(self.aging_start), dtype=torch.float64, device=dev)])
        self.age_counter = torch.cat([self.age_counter, torch.zeros(n, self.m, dtype=torch.int64, device=dev)])
        self.locked = torch.cat([self.locked, torch.zeros(n, dtype=torch.bool, device=dev)])

    def initialised(self) -> torch.Tensor:
        return self.count > 0

    def lock_initialised(self) -> None:
        """Lock every initialised unit (a task has trained it): its basis freezes (no expansion,
        no aging) where lock_bases, and the stable profile protects its weights."""
        self.locked |= self.initialised()

    def close_task(self) -> None:
        """A task ended (stable profile): lock its units and, with avoid_energy, add the mean
        second moment of its routed hashes to the earlier tasks'."""
        self.lock_initialised()
        if self.avoid_energy and int(self.task_hashes) > 0:
            self.old_moment += self.task_moment / int(self.task_hashes)
            self.task_moment.zero_()
            self.task_hashes.zero_()
            self._moment_version += 1

    def _record(self, h: torch.Tensor) -> None:
        """Add a training step's normalised hashes to the task's second moment."""
        h = h.detach().to(torch.float64)
        self.task_moment.addmm_(h.T, h)
        self.task_hashes += h.shape[0]

    def selectable(self, used, train: bool) -> np.ndarray:
        """[n, M] numpy mask of units a sample may select next (`used` [n, M]: units already
        visited): unused, and initialised unless training."""
        free = ~host_array(used)
        return free if train else free & host_array(self.initialised())[None]

    # ---- selection (Alg. 3) -------------------------------------------------------------

    def select(self, h: torch.Tensor, used: torch.Tensor, train: bool):
        """Select one unit per hash vector.

        h [n, s] normalised hashes, used [n, M] units already visited. Returns (sel [n] long,
        ok [n] bool: a unit was selected, residue [n, s], coef [n, m]) as tensors on h's device;
        in training, `select_train`'s selection with Alg. 3's initialisation.
        """
        if not train:
            sel, ok, residue, coef_all = self.select_frozen(h, ~used & self.initialised())
            return sel, ok, residue, coef_all[torch.arange(len(sel), device=sel.device), sel]
        sel, ok, residue, coef = self.select_train(h, host_array(used))
        return (*(torch.from_numpy(a).to(h.device) for a in (sel, ok)), residue,
                torch.from_numpy(coef).to(h.device))

    def select_train(self, h: torch.Tensor, used: np.ndarray):
        """Training selection (Alg. 3) with the bookkeeping in numpy (few tensor ops per step).

        h [n, s] normalised hashes (the residues keep their graph), used [n, M] numpy bool.
        Returns (sel [n] int64, ok [n] bool, residue [n, s] tensor, coef [n, m] float32: the
        selected unit's coefficients); every array but the residue is numpy. A sample whose
        best energy is below tau_empty**2 (or that has no initialised candidate) takes the
        lowest-index empty unit, initialised with its hash (residue 0). Samples initialise in
        batch order, each seeing the bases the previous ones left.
        """
        # Training edits self.bases in place afterwards: project on a snapshot the graph can keep.
        # (The coefficients carry no gradient: the residue's own node differentiates h.)
        if self.recording and self.avoid_energy:
            self._record(h)
        bases = self.bases.clone()
        coef_all = self._project_all(h.detach(), bases)
        coefs = host_array(coef_all)
        rows = np.arange(len(coefs))
        init = host_array(self.count) > 0
        cand = init & ~used
        energy = np.where(cand, np.square(coefs).sum(-1), np.float32(-1.0))
        sel = energy.argmax(1)                            # first (lowest) index on ties
        ok = cand.any(1)
        fresh = None
        if not init.all():
            empty = ~init[None] & ~used
            nonzero = host_array(h.detach().norm(dim=1) > 0)
            want = np.flatnonzero(empty.any(1) & nonzero & (~ok | (energy[rows, sel] < self.tau_empty ** 2)))
            fresh = np.zeros_like(ok)
            for i in want.tolist():
                choice = self._select_or_init(h[i].detach(), torch.from_numpy(used[i]).to(h.device))
                if choice is not None:
                    sel[i], ok[i], fresh[i] = choice[0], True, choice[1]
            if len(want):   # bases may have changed: project everyone on the current snapshot
                bases = self.bases.clone()
                coef_all = self._project_all(h.detach(), bases)
                coefs = host_array(coef_all)
        mine = torch.from_numpy(sel[:, None] == np.arange(self.num_units)).to(h.device)
        residue = self._residue(h, coef_all, mine, bases)
        keep = ok if fresh is None else ok & ~fresh
        if not keep.all():
            residue = torch.where(torch.from_numpy(keep).to(h.device)[:, None], residue,
                                  torch.zeros_like(residue))
        return sel, ok, residue, coefs[rows, sel]

    def select_frozen(self, h: torch.Tensor, cand: torch.Tensor):
        """`select` on frozen bases (eval): cand [n, M] the units each hash may select.

        Returns (sel, ok, residue: 0 where nothing was selectable, coefficients on every unit
        [n, M, m]); no initialisation, and the bases are not copied.
        """
        coef_all = self._project_all(h.detach(), self.bases)   # (the residue node differentiates h)
        energy = coef_all.square().sum(-1).masked_fill_(~cand, -1.0)
        sel = energy.max(dim=1)[1]                       # first (lowest) index on ties
        ok = cand.any(dim=1)
        mine = sel[:, None] == torch.arange(self.num_units, device=sel.device)
        residue = self._residue(h, coef_all, mine, self.bases)
        if not bool(ok.all()):          # (a broadcast masked_fill costs as much as the GEMM)
            residue = residue.masked_fill(~ok[:, None], 0.0)
        return sel, ok, residue, coef_all

    @staticmethod
    def _residue(h: torch.Tensor, coef_all: torch.Tensor, mine: torch.Tensor,
                 bases: torch.Tensor) -> torch.Tensor:
        """h minus its projection on the selected unit's basis (`mine` [n, M]: True at each
        sample's unit), as one GEMM of the coefficients masked to the selected unit's slots
        (no [n, m, s] gather of bases); differentiable in h only."""
        twins = native.nodes()
        if twins is None:
            return _ProjectOut.apply(h, coef_all, mine, bases.flatten(0, 1))
        return twins.project_out(h, coef_all, mine, bases.flatten(0, 1))

    def _project_all(self, h: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
        """Coefficients of every hash on every unit's basis: [n, M, m]."""
        return (h @ bases.flatten(0, 1).T).view(h.shape[0], self.num_units, self.m)

    def _select_or_init(self, h: torch.Tensor, used: torch.Tensor) -> tuple[int, bool] | None:
        """Alg. 3 for one sample against the current bases: (unit, initialised now) or None."""
        init = self.initialised()
        cand = init & ~used
        if cand.any():
            energy = (self.bases @ h).square().sum(-1).masked_fill(~cand, -1.0)
            if energy.max() >= self.tau_empty ** 2:
                return int(energy.argmax()), False
        empty = (~init & ~used).nonzero().flatten()
        if len(empty) == 0:
            return (int(energy.argmax()), False) if cand.any() else None
        unit = int(empty[0])
        vec = self._away_from_old(h)
        self.bases[unit].zero_()
        self.bases[unit, 0] = vec / vec.norm()
        self.count[unit] = 1
        self.age_counter[unit] = int(self.age_threshold[unit].item())
        return unit, True

    # ---- expansion (Alg. 4) and aging (Alg. 2) ----------------------------------------------

    @torch.no_grad()
    def maintain(self, sel, h: torch.Tensor, coef) -> None:
        """Run Alg. 4 then Alg. 2 for each (unit, hash) pair, in order (training only).

        `sel` [n] units and `coef` [n, m] the projections computed at selection (tensors or
        numpy arrays); they are exact until a unit's basis changes in this call, after which
        that unit's coefficients are recomputed.
        """
        units_np = host_array(sel)
        width = host_array(self.count)[units_np]
        locked_np = host_array(self.locked)[units_np] & self.lock_bases
        # the samples whose unit can learn (initialised, not locked): often none, or a few
        if not ((width > 0) & ~locked_np).any():
            return
        nonzero = host_array(h).any(axis=1)
        coefs = host_array(coef)
        # Per-sample projection norm and weakest vector from the selection-time coefficients
        # (slots beyond a unit's count are masked); valid until the unit's basis changes here.
        pnorms = np.sqrt(np.square(coefs).sum(axis=1))
        masked = np.where(np.arange(self.m)[None, :] < width[:, None], np.abs(coefs), np.inf)
        weakest_all = masked.argmin(axis=1)
        if self._age_in_bulk(units_np, width, locked_np | ~nonzero, pnorms, weakest_all):
            return
        units, counts, locked = units_np.tolist(), self.count.tolist(), (self.locked & self.lock_bases).tolist()
        nonzero, pnorms, weakest_all = nonzero.tolist(), pnorms.tolist(), weakest_all.tolist()
        bases = self.bases
        counters = self.age_counter.tolist()           # Python ints and floats (float64: the same
        thresholds = self.age_threshold.tolist()       # products and floors as the buffers' dtype)
        counters_before = [row[:] for row in counters]
        thresholds_before = thresholds[:]
        m, tau_expand, aging, rate = self.m, self.tau_expand, self.aging, self.aging_rate
        dirty: set[int] = set()
        for i, unit in enumerate(units):
            n = counts[unit]
            if n == 0 or locked[unit] or not nonzero[i]:   # a zero hash carries nothing to learn
                continue
            if unit in dirty:
                c = host_array(bases[unit, :n] @ h[i])
                pnorm, weakest = float(np.sqrt(np.dot(c, c))), int(np.argmin(np.abs(c)))
            else:
                pnorm, weakest = pnorms[i], weakest_all[i]
            if n < m and pnorm < tau_expand:
                if self._expand(unit, n, h[i]):
                    counts[unit] = n + 1
                    counters[unit][n] = int(thresholds[unit])
                    dirty.add(unit)
                    continue
            if aging and n > 1:
                row = counters[unit]
                row[weakest] -= 1
                if row[weakest] <= 0:
                    thresholds[unit] *= rate
                    row[weakest] = math.floor(thresholds[unit])
                    self._renew(unit, n, weakest, h[i])
                    dirty.add(unit)
        if counters != counters_before:
            self.age_counter.copy_(torch.tensor(counters, dtype=self.age_counter.dtype))
        if thresholds != thresholds_before:
            self.age_threshold.copy_(torch.tensor(thresholds, dtype=self.age_threshold.dtype))

    def _age_in_bulk(self, units: np.ndarray, width: np.ndarray, skip: np.ndarray,
                     pnorms: np.ndarray, weakest: np.ndarray) -> bool:
        """The usual case of `maintain` in one step: no sample expands a basis and no countdown
        reaches zero, so the per-sample loop would only count down, and the order of the
        samples does not matter. Applies the countdowns and returns True in that case (CPU
        buffers); returns False, changing nothing, when the loop must run."""
        if self.age_counter.device.type != "cpu":
            return False
        learn = (width > 0) & ~skip
        if (learn & (width < self.m) & (pnorms < self.tau_expand)).any():
            return False
        if not self.aging:
            return True
        age = learn & (width > 1)
        if not age.any():
            return True
        counts = np.zeros(self.age_counter.shape, dtype=np.int64)
        np.add.at(counts, (units[age], weakest[age]), 1)
        counters = self.age_counter.numpy()             # the buffer's memory
        if (counters <= counts)[counts > 0].any():      # a countdown would reach 0: a renewal
            return False
        counters -= counts
        return True

    def _away_from_old(self, vec: torch.Tensor) -> torch.Tensor:
        """`vec` minus its projection on what new vectors avoid (stable profile): the span of
        every locked unit's basis (`hrn.orthogonal_bases`) and the subspace holding
        `avoid_energy` of earlier tasks' hash energy (`hrn.avoid_task_energy`); `vec` itself
        when there is none or `vec` lies (almost) in it. A new vector orthogonal to the locked
        spans gives a sample whose energy on an earlier task's unit exceeds 1/2 less than 1/2 on
        the new unit; one outside the old hash subspace holds little of any old hash's energy."""
        span = self._avoided_span()
        if span is None:
            return vec
        away = vec - (span @ vec) @ span
        away = away - (span @ away) @ span             # second pass keeps float32 orthogonality
        return away if float(away.norm()) > 1e-3 * float(vec.norm()) else vec

    def _avoided_span(self) -> torch.Tensor | None:
        """Orthonormal rows spanning what new vectors avoid, or None (cached until a lock or the
        earlier tasks' moment changes)."""
        key = (self.locked.clone(), self._moment_version)
        if self._avoided is not None and torch.equal(self._avoided[0], key[0]) and self._avoided[1] == key[1]:
            return self._avoided[2]
        parts = []
        if self.orthogonal_to_locked and bool(self.locked.any()):
            parts.append(self.bases[self.locked].reshape(-1, self.s).double())
        if self.avoid_energy and bool(self.old_moment.any()):
            parts.append(self._old_hash_subspace())
        span = None
        if parts:
            rows = torch.cat(parts)
            rows = rows[rows.norm(dim=1) > 0]
            q, r = torch.linalg.qr(rows.T)
            span = q[:, r.diagonal().abs() > 1e-6].T.to(self.bases.dtype).contiguous()
        self._avoided = (*key, span)
        return span

    def _old_hash_subspace(self) -> torch.Tensor:
        """The leading eigenvectors of the earlier tasks' hash moment that hold `avoid_energy`
        of its trace (rows, float64)."""
        w, v = torch.linalg.eigh(self.old_moment)
        w, v = w.flip(0).clamp_min(0), v.flip(1)
        share = w.cumsum(0) / w.sum()
        k = int((share < self.avoid_energy).sum()) + 1      # (no host tensor: works on any device)
        return v[:, :min(k, self.s)].T

    def _expand(self, unit: int, n: int, vec: torch.Tensor) -> bool:
        """Alg. 4: append r / ||r|| (the caller checked ||p|| < tau_expand)."""
        vec = self._away_from_old(vec)
        basis = self.bases[unit, :n]
        residue = vec - (basis @ vec) @ basis
        norm = residue.norm()
        if norm <= 1e-6:
            return False
        self.bases[unit, n] = residue / norm
        self.count[unit] = n + 1
        return True

    def _renew(self, unit: int, n: int, weakest: int, vec: torch.Tensor) -> None:
        """Alg. 2 replacement: vector `weakest` <- normalised h minus its projection on the others."""
        vec = self._away_from_old(vec)
        others = torch.cat([self.bases[unit, :weakest], self.bases[unit, weakest + 1:n]])
        fresh = vec - (others @ vec) @ others
        fresh = fresh - (others @ fresh) @ others   # second pass keeps float32 orthogonality
        norm = fresh.norm()
        if norm > 1e-6 * vec.norm():
            self.bases[unit, weakest] = fresh / norm
