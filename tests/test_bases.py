"""BasisPool: selection with initialisation (Alg. 3), expansion (Alg. 4), aging (Alg. 2)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hrn_hw.reference.bases import BasisPool

S = 8
E = torch.eye(S)


def unit_vec(*pairs, s=S):
    """Normalised sum of coefficient * e_index."""
    v = torch.zeros(s)
    for c, i in pairs:
        v[i] += c
    return v / v.norm()


def make_pool(M=4, m=3, s=S, T0=5, rate=1.2, tau_empty=0.2, tau_expand=0.01, aging=True):
    return BasisPool(M, m, s, T0, rate, tau_empty, tau_expand, aging)


def set_unit(pool, u, vectors):
    """Give unit u the given (orthonormal) vectors, as if grown by the algorithms."""
    pool.bases[u].zero_()
    for k, v in enumerate(vectors):
        pool.bases[u, k] = v
    pool.count[u] = len(vectors)
    pool.age_counter[u].zero_()
    pool.age_counter[u, :len(vectors)] = int(pool.age_threshold[u].item())


def maintain(pool, sel, h):
    """pool.maintain with the selection-time coefficients B_sel h (what select() returns)."""
    sel = torch.as_tensor(sel, dtype=torch.long)
    coef = torch.einsum("ns,nks->nk", h, pool.bases[sel])
    pool.maintain(sel, h, coef)


def no_used(n, M):
    return torch.zeros(n, M, dtype=torch.bool)


def assert_orthonormal(pool, atol=1e-5):
    for u in range(pool.num_units):
        n = int(pool.count[u])
        B = pool.bases[u, :n]
        if n:
            torch.testing.assert_close(B @ B.T, torch.eye(n), rtol=0, atol=atol)
        assert torch.all(pool.bases[u, n:] == 0), f"unit {u}: rows beyond count are not zero"


# ---- Alg. 3: selection and initialisation ----------------------------------------------------

def test_empty_pool_initialises_unit_0_with_normalised_hash():
    pool = make_pool()
    h = unit_vec((1.0, 1), (2.0, 4))[None]
    sel, ok, r, _ = pool.select(h, no_used(1, 4), train=True)
    assert sel.tolist() == [0] and ok.tolist() == [True]
    assert torch.equal(r, torch.zeros_like(r))              # a fresh unit's residue is 0
    assert pool.count.tolist() == [1, 0, 0, 0]
    torch.testing.assert_close(pool.bases[0, 0], h[0])
    assert torch.all(pool.bases[0, 1:] == 0) and torch.all(pool.bases[1:] == 0)
    assert pool.age_counter[0, 0] == 5


def test_initialisation_takes_lowest_index_empty_unused_unit():
    pool = make_pool(M=5)
    set_unit(pool, 1, [E[0]])
    set_unit(pool, 3, [E[1]])
    h = unit_vec((1.0, 5))[None]                             # orthogonal to both: energy 0
    sel, ok, r, _ = pool.select(h, no_used(1, 5), train=True)
    assert int(sel) == 0 and bool(ok)
    # unit 0 used already (and 1 initialised but orthogonal): the next empty one, unit 2
    pool2 = make_pool(M=5)
    set_unit(pool2, 1, [E[0]])
    set_unit(pool2, 3, [E[1]])
    used = no_used(1, 5)
    used[0, 0] = True
    sel, ok, r, _ = pool2.select(h, used, train=True)
    assert int(sel) == 2 and bool(ok)
    assert pool2.count.tolist() == [0, 1, 1, 1, 0]
    torch.testing.assert_close(pool2.bases[2, 0], h[0])


def test_no_initialised_unused_unit_forces_initialisation_even_with_high_energy_elsewhere():
    pool = make_pool(M=3)
    set_unit(pool, 0, [E[0]])
    h = E[0][None].clone()                                    # energy 1 on unit 0, but it is used
    used = no_used(1, 3)
    used[0, 0] = True
    sel, ok, r, _ = pool.select(h, used, train=True)
    assert int(sel) == 1 and bool(ok)
    assert pool.count.tolist() == [1, 1, 0]


@pytest.mark.parametrize("cos,expect_init", [(0.21, False), (0.2 + 1e-4, False), (0.2 - 1e-4, True), (0.19, True),
                                              (0.0, True), (0.9, False)])
def test_tau_empty_threshold_both_sides(cos, expect_init):
    pool = make_pool(M=3, tau_empty=0.2)
    set_unit(pool, 0, [E[0]])
    h = (cos * E[0] + math.sqrt(1 - cos * cos) * E[1])[None]  # energy = cos^2 against unit 0
    before = pool.bases.clone()
    sel, ok, r, coef = pool.select(h, no_used(1, 3), train=True)
    assert bool(ok)
    if expect_init:
        assert int(sel) == 1
        assert pool.count.tolist() == [1, 1, 0]
        torch.testing.assert_close(pool.bases[1, 0], h[0])
        assert torch.equal(r, torch.zeros_like(r))
    else:
        assert int(sel) == 0
        assert torch.equal(pool.bases, before) and pool.count.tolist() == [1, 0, 0]
        torch.testing.assert_close(r[0], h[0] - (h[0] @ E[0]) * E[0])
        torch.testing.assert_close(coef[0, 0], h[0, 0])


def test_low_energy_without_empty_unit_selects_argmax():
    pool = make_pool(M=2)
    set_unit(pool, 0, [E[0]])
    set_unit(pool, 1, [E[1]])
    h = unit_vec((0.05, 0), (0.1, 1), (1.0, 2))[None]         # both energies < tau_empty^2
    sel, ok, r, _ = pool.select(h, no_used(1, 2), train=True)
    assert int(sel) == 1 and bool(ok)
    torch.testing.assert_close(r[0], h[0] - h[0, 1] * E[1])


def test_eval_never_selects_or_initialises_empty_units():
    pool = make_pool(M=4)
    set_unit(pool, 2, [E[0]])
    before = copy.deepcopy(pool.state_dict())
    h = torch.stack([unit_vec((1.0, 3)), unit_vec((0.1, 0), (1.0, 1)), E[0]])
    sel, ok, r, _ = pool.select(h, no_used(3, 4), train=False)
    assert sel.tolist() == [2, 2, 2] and ok.tolist() == [True] * 3
    for k, v in pool.state_dict().items():
        assert torch.equal(v, before[k]), k
    # nothing selectable: no selection and zero residue
    used = no_used(3, 4)
    used[:, 2] = True
    sel, ok, r, _ = pool.select(h, used, train=False)
    assert ok.tolist() == [False] * 3
    assert torch.equal(r, torch.zeros_like(r))
    assert pool.selectable(used, train=False).any(1).tolist() == [False] * 3
    assert pool.selectable(used, train=True).any(1).tolist() == [True] * 3
    # an entirely empty pool in eval: nothing selected
    empty = make_pool(M=3)
    sel, ok, r, _ = empty.select(h, no_used(3, 3), train=False)
    assert ok.tolist() == [False] * 3 and int(empty.count.sum()) == 0


def test_zero_hash_never_initialises():
    pool = make_pool(M=3)
    sel, ok, r, _ = pool.select(torch.zeros(1, S), no_used(1, 3), train=True)
    assert not bool(ok) and int(pool.count.sum()) == 0
    set_unit(pool, 1, [E[0]])
    sel, ok, r, _ = pool.select(torch.zeros(1, S), no_used(1, 3), train=True)
    assert bool(ok) and int(sel) == 1 and pool.count.tolist() == [0, 1, 0]
    assert torch.equal(r, torch.zeros_like(r))


def test_argmax_ties_go_to_lowest_index():
    pool = make_pool(M=4)
    set_unit(pool, 0, [E[0]])
    set_unit(pool, 1, [E[1]])
    set_unit(pool, 2, [E[1]])                                 # same basis as unit 1
    set_unit(pool, 3, [E[2]])
    h = E[1][None].clone()
    sel, *_ = pool.select(h, no_used(1, 4), train=False)
    assert int(sel) == 1
    used = no_used(1, 4)
    used[0, 1] = True
    sel, *_ = pool.select(h, used, train=False)
    assert int(sel) == 2
    # equal energy 1/2 on units 0 and 1 (and 2): unit 0
    h = unit_vec((1.0, 0), (1.0, 1))[None]
    sel, *_ = pool.select(h, no_used(1, 4), train=True)
    assert int(sel) == 0
    # a strictly larger energy on a higher index wins
    h = unit_vec((1.0, 0), (1.0, 1), (1.5, 2))[None]
    sel, *_ = pool.select(h, no_used(1, 4), train=False)
    assert int(sel) == 3


def test_energy_uses_the_whole_basis_and_rows_are_independent():
    pool = make_pool(M=3, m=3)
    set_unit(pool, 0, [E[0], E[1]])                           # energy a0^2 + a1^2
    set_unit(pool, 1, [E[2]])
    set_unit(pool, 2, [E[3], E[4], E[5]])
    h = torch.stack([unit_vec((0.5, 0), (0.5, 1), (0.6, 2)),   # 0.5 vs 0.36/0.86 -> unit 0
                     unit_vec((0.3, 0), (0.3, 1), (0.6, 2)),   # 0.18 vs 0.36 -> unit 1
                     unit_vec((0.2, 3), (0.2, 4), (0.2, 5), (0.5, 2))])
    used = no_used(3, 3)
    used[2, 2] = True                                          # row 2 may not take unit 2
    sel, ok, r, coef = pool.select(h, used, train=False)
    assert sel.tolist() == [0, 1, 1]
    for i in range(3):
        B = pool.bases[int(sel[i])]
        torch.testing.assert_close(coef[i], B @ h[i])
        torch.testing.assert_close(r[i], h[i] - (B @ h[i]) @ B)


def _select_one_at_a_time(pool, h, used):
    out = [pool.select(h[i:i + 1], used[i:i + 1], train=True) for i in range(h.shape[0])]
    return [torch.cat(t) for t in zip(*out)]


@pytest.mark.parametrize("case", ["duplicate", "stale_argmax", "no_empty_left"])
def test_initialising_samples_see_the_bases_earlier_samples_left(case):
    """select()'s docstring: samples initialise in batch order, each seeing the bases the previous
    ones left; so an initialising sample must select as if the earlier ones came one at a time.
    (Regression: the 2nd of two identical hashes on an empty pool used to be dropped, ok=False.)"""
    pool = make_pool(M=4)
    if case == "duplicate":
        h0 = unit_vec((1.0, 1), (0.5, 2))
        h = torch.stack([h0, h0])          # 2nd sample takes the unit the 1st initialised
    elif case == "stale_argmax":
        set_unit(pool, 0, [E[0]])
        h = torch.stack([unit_vec((0.10, 0), (1.0, 1)),      # energy 0.0099 -> initialises unit 1
                         unit_vec((0.15, 0), (1.0, 1))])     # then its best is unit 1 (energy ~1)
    else:
        pool = make_pool(M=2)
        set_unit(pool, 0, [E[0]])
        h = torch.stack([E[3], E[4]])      # 1st initialises unit 1; 2nd finds no empty unit: argmax
    seq = copy.deepcopy(pool)
    sel, ok, r, _ = pool.select(h, no_used(2, pool.num_units), train=True)
    sel_s, ok_s, r_s, _ = _select_one_at_a_time(seq, h, no_used(2, pool.num_units))
    assert ok.tolist() == ok_s.tolist() == [True, True]
    assert sel.tolist() == sel_s.tolist()
    torch.testing.assert_close(r, r_s, rtol=0, atol=1e-6)
    assert torch.equal(pool.bases, seq.bases) and torch.equal(pool.count, seq.count)


@pytest.mark.parametrize("seed", range(4))
def test_training_batch_select_matches_documented_batch_semantics(seed):
    """docs/semantics.md: the batch is selected against the bases as they stand; the samples
    that want an empty unit (best energy < tau_empty^2 or no initialised candidate) then run
    Alg. 3 in batch order against the bases the previous ones left."""
    g = torch.Generator().manual_seed(seed)
    M = 6
    pool = make_pool(M=M, m=2, tau_empty=0.5)
    set_unit(pool, 2, [E[0]])
    set_unit(pool, 4, [E[1], E[2]])
    n = 12
    base = torch.randn(3, S, generator=g)
    h = torch.nn.functional.normalize(base[torch.randint(0, 3, (n,), generator=g)]
                                      + 0.6 * torch.randn(n, S, generator=g), dim=1)
    h[5] = 0.0                                                   # a zero hash never initialises
    used = torch.rand(n, M, generator=g) < 0.3
    ref = copy.deepcopy(pool)
    bases0, init0 = pool.bases.clone(), pool.count > 0            # before the batch
    sel, ok, r, coef = pool.select(h, used, train=True)
    for i in range(n):
        cand = init0 & ~used[i]
        empty = ~init0 & ~used[i]
        energy = (bases0 @ h[i]).square().sum(-1)
        best = energy.masked_fill(~cand, -1).max() if cand.any() else None
        wants = bool(empty.any()) and bool(h[i].norm() > 0) and (best is None or best < 0.25)
        if not wants:
            if cand.any():
                assert bool(ok[i]) and int(sel[i]) == int(energy.masked_fill(~cand, -1).argmax())
            else:
                assert not bool(ok[i])
                continue
        else:   # Alg. 3 against the bases left by the earlier initialisations
            s_i, ok_i, r_i, _ = ref.select(h[i:i + 1], used[i:i + 1], train=True)
            assert bool(ok[i]) == bool(ok_i[0]) and int(sel[i]) == int(s_i[0])
            torch.testing.assert_close(r[i], r_i[0], rtol=0, atol=1e-6)
        B = pool.bases[int(sel[i])]
        torch.testing.assert_close(coef[i], B @ h[i], rtol=0, atol=1e-6)
    assert torch.equal(pool.bases, ref.bases) and torch.equal(pool.count, ref.count)
    assert int(pool.count.gt(0).sum()) > 2                       # some initialisations happened


# ---- Alg. 4: expansion ------------------------------------------------------------------------

@pytest.mark.parametrize("p,expands", [(0.0, True), (0.005, True), (0.0099, True), (0.0101, False), (0.3, False)])
def test_expansion_appends_normalised_residue_iff_projection_below_tau_expand(p, expands):
    pool = make_pool(M=2, tau_expand=0.01)
    set_unit(pool, 1, [E[0]])
    h = p * E[0] + math.sqrt(1 - p * p) * unit_vec((1.0, 1), (0.3, 2))
    before = pool.bases.clone()
    maintain(pool, [1], h[None])
    if expands:
        assert pool.count.tolist() == [0, 2]
        r = h - (h @ E[0]) * E[0]
        torch.testing.assert_close(pool.bases[1, 1], r / r.norm(), rtol=0, atol=1e-6)
        torch.testing.assert_close(pool.bases[1, 0], E[0])
        assert int(pool.age_counter[1, 1]) == 5
        assert torch.all(pool.bases[1, 2] == 0)
    else:
        assert pool.count.tolist() == [0, 1]
        assert torch.equal(pool.bases, before)               # n = 1: no aging either
        assert pool.age_counter[1].tolist() == [5, 0, 0]


def test_expansion_never_beyond_m_and_sequential_within_a_call():
    pool = make_pool(M=1, m=3, aging=False)
    set_unit(pool, 0, [E[0]])
    hs = torch.stack([E[1], E[2], E[3], E[4]])               # each orthogonal to everything so far
    maintain(pool, [0, 0, 0, 0], hs)
    assert pool.count.tolist() == [3]
    torch.testing.assert_close(pool.bases[0], torch.stack([E[0], E[1], E[2]]))
    maintain(pool, [0], E[5][None])
    assert pool.count.tolist() == [3]
    torch.testing.assert_close(pool.bases[0], torch.stack([E[0], E[1], E[2]]))
    # the same hash twice in one call: the first expands, the second now projects fully (no expansion)
    pool = make_pool(M=1, m=3, aging=False)
    set_unit(pool, 0, [E[0]])
    maintain(pool, [0, 0], torch.stack([E[1], E[1]]))
    assert pool.count.tolist() == [2]


def test_maintain_ignores_uninitialised_units():
    pool = make_pool(M=3)
    set_unit(pool, 0, [E[0]])
    before = copy.deepcopy(pool.state_dict())
    maintain(pool, [1, 2], torch.stack([E[1], E[2]]))
    for k, v in pool.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---- Alg. 2: aging ----------------------------------------------------------------------------

def test_aging_countdown_and_replacement():
    pool = make_pool(M=2, m=3, T0=3, rate=1.5)
    set_unit(pool, 1, [E[0], E[1], E[2]])
    h = unit_vec((0.6, 0), (-0.5, 1), (0.1, 2), (0.6, 3))     # |coef| smallest on vector 2
    others = pool.bases.clone()
    for expect in ([3, 3, 2], [3, 3, 1]):
        maintain(pool, [1], h[None])
        assert pool.age_counter[1].tolist() == expect
        assert torch.equal(pool.bases, others)                 # no replacement before 0
        assert float(pool.age_threshold[1]) == 3.0
    maintain(pool, [1], h[None])                  # counter hits 0: replace
    assert float(pool.age_threshold[1]) == 4.5
    assert pool.age_counter[1].tolist() == [3, 3, 4]           # floor(4.5)
    fresh = h - (h @ E[0]) * E[0] - (h @ E[1]) * E[1]
    torch.testing.assert_close(pool.bases[1, 2], fresh / fresh.norm(), rtol=0, atol=1e-6)
    torch.testing.assert_close(pool.bases[1, :2], torch.stack([E[0], E[1]]))
    assert pool.count.tolist() == [0, 3]
    assert float(pool.age_threshold[0]) == 3.0 and pool.age_counter[0].tolist() == [0, 0, 0]
    assert_orthonormal(pool)
    # now vector 1 (|coef| 0.5) is the weakest: its counter counts down
    maintain(pool, [1], h[None])
    assert pool.age_counter[1].tolist() == [3, 2, 4]


def test_aging_uses_absolute_coefficients():
    pool = make_pool(M=1, m=3, T0=4)
    set_unit(pool, 0, [E[0], E[1], E[2]])
    h = unit_vec((0.5, 0), (-0.6, 1), (0.1, 2), (0.6, 3))     # raw argmin is 1, |.| argmin is 2
    maintain(pool, [0], h[None])
    assert pool.age_counter[0].tolist() == [4, 4, 3]
    h = unit_vec((-0.05, 0), (0.6, 1), (0.3, 2), (0.6, 3))
    maintain(pool, [0], h[None])
    assert pool.age_counter[0].tolist() == [3, 4, 3]


def test_aging_applies_below_m_when_no_expansion_but_not_to_single_vectors():
    pool = make_pool(M=2, m=3, T0=2)
    set_unit(pool, 0, [E[0], E[1]])
    set_unit(pool, 1, [E[2]])
    h0 = unit_vec((0.8, 0), (0.3, 1), (0.5, 4))               # ||p|| >= tau_expand: aging, n = 2
    h1 = unit_vec((0.5, 2), (0.8, 5))                          # n = 1: neither expands nor ages
    maintain(pool, [0, 1], torch.stack([h0, h1]))
    assert pool.age_counter[0].tolist() == [2, 1, 0]
    assert pool.age_counter[1].tolist() == [2, 0, 0]
    maintain(pool, [0], h0[None])                 # hits 0: replace vector 1
    assert pool.count.tolist() == [2, 1]
    assert float(pool.age_threshold[0]) == pytest.approx(2.4)
    assert pool.age_counter[0].tolist() == [2, 2, 0]
    fresh = h0 - (h0 @ E[0]) * E[0]
    torch.testing.assert_close(pool.bases[0, 1], fresh / fresh.norm(), rtol=0, atol=1e-6)
    assert_orthonormal(pool)


def test_aging_disabled_changes_nothing():
    pool = make_pool(M=1, m=2, T0=1, aging=False)
    set_unit(pool, 0, [E[0], E[1]])
    before = copy.deepcopy(pool.state_dict())
    for _ in range(5):
        maintain(pool, [0], unit_vec((0.8, 0), (0.3, 1), (0.5, 4))[None])
    for k, v in pool.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_replacements_happen_exactly_every_floor_T_calls_with_growing_T():
    T0, rate = 5, 1.2                                          # the paper's values
    pool = make_pool(M=1, m=2, T0=T0, rate=rate)
    set_unit(pool, 0, [E[0], E[1]])
    h = unit_vec((0.9, 0), (0.1, 1), (0.42, 2))                # weakest stays vector 1
    T, expected_calls, call = float(T0), [], 0
    counter = int(T)
    for _ in range(6):
        call += counter
        expected_calls.append(call)
        T *= rate
        counter = math.floor(T)
    replaced_at, last_T = [], float(pool.age_threshold[0])
    for c in range(1, expected_calls[-1] + 1):
        maintain(pool, [0], h[None])
        if float(pool.age_threshold[0]) != last_T:
            replaced_at.append(c)
            last_T = float(pool.age_threshold[0])
            assert int(pool.age_counter[0, 1]) == math.floor(last_T)
        assert int(pool.age_counter[0, 0]) == T0                # the strong vector never counts down
    assert replaced_at == expected_calls
    assert float(pool.age_threshold[0]) == pytest.approx(T0 * rate ** 6)
    assert_orthonormal(pool)


# ---- orthonormality -------------------------------------------------------------------------

def _random_maintain_run(seed, near_noise, kinds, steps=400, s=64, M=6, m=3):
    """select + maintain on a stream of random hashes; returns the pool and the worst |B B^T - I|.

    kind 0: Gaussian, 1: non-negative, 2: an existing basis vector plus noise of norm ~near_noise.
    A large tau_expand (0.3) and small T0 (2) make expansions and aging replacements frequent."""
    g = torch.Generator().manual_seed(seed)
    pool = BasisPool(M, m, s, 2, 1.2, 0.2, 0.3, True)
    used = torch.zeros(8, M, dtype=torch.bool)
    worst = 0.0
    for step in range(steps):
        kind = kinds[step % len(kinds)]
        if kind == 0:
            v = torch.randn(8, s, generator=g)
        elif kind == 1:
            v = torch.rand(8, s, generator=g)
        else:
            u = int(torch.randint(0, M, (1,), generator=g))
            n = max(int(pool.count[u]), 1)
            base = pool.bases[u, int(torch.randint(0, n, (1,), generator=g))]
            v = base[None] + near_noise * torch.randn(8, s, generator=g) / math.sqrt(s)
        h = torch.nn.functional.normalize(v, dim=1)
        sel, ok, _, coef = pool.select(h, used, train=True)
        pool.maintain(sel[ok], h[ok], coef[ok])
        for u in range(M):
            n = int(pool.count[u])
            if n:
                B = pool.bases[u, :n]
                worst = max(worst, float((B @ B.T - torch.eye(n)).abs().max()))
    return pool, worst


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bases_stay_orthonormal_under_many_random_maintain_calls(seed):
    pool, worst = _random_maintain_run(seed, near_noise=0.7, kinds=(0, 1, 2))
    assert worst < 1e-5
    assert_orthonormal(pool)
    assert int(pool.count.min()) >= 1 and int(pool.count.max()) == pool.m
    assert float(pool.age_threshold.max()) > 2.0                  # some replacements happened


def test_bases_stay_orthonormal_for_hashes_near_basis_vectors():
    # hashes at cos ~0.999 to a basis vector (near-duplicate samples), mixed with random ones
    pool, worst = _random_maintain_run(0, near_noise=0.05, kinds=(0, 2))
    assert worst < 1e-5


@pytest.mark.parametrize("eps", [1e-4, 1e-5])
def test_aging_replacement_stays_orthonormal_for_hash_near_the_other_vectors(eps):
    g = torch.Generator().manual_seed(1)
    s = 300
    q, _ = torch.linalg.qr(torch.randn(s, 3, generator=g))
    pool = BasisPool(1, 3, s, 1, 1.2, 0.2, 0.01, True)
    set_unit(pool, 0, list(q.T))
    noise = torch.randn(s, generator=g)
    noise = noise - q @ (q.T @ noise)
    h = 0.8 * q[:, 0] + 0.6 * q[:, 1] + eps * noise / noise.norm()   # weakest: vector 2, counter 1
    maintain(pool, [0], (h / h.norm())[None])
    assert float(pool.age_threshold[0]) == pytest.approx(1.2)        # the replacement did run
    assert_orthonormal(pool)


def test_hrn_training_keeps_bases_orthonormal(make_trained):
    model = make_trained(seed=3, extra_units=2, steps=10, tau_expand=0.6, aging_start=2)
    pool = model.pool
    assert int(pool.count.max()) == pool.m                            # bases grew
    assert float(pool.age_threshold.max()) > 2.0                      # aging replaced vectors
    assert_orthonormal(pool)
    model = make_trained(seed=0)                                      # the paper's thresholds
    assert int(model.pool.count.min()) >= 1
    assert_orthonormal(model.pool)


def test_basis_lock_freezes_initialised_units_only():
    g = torch.Generator().manual_seed(5)
    s = 64
    q, _ = torch.linalg.qr(torch.randn(s, 3, generator=g))
    pool = BasisPool(3, 3, s, 1, 1.2, 0.2, 0.5, True)
    set_unit(pool, 0, [q[:, 0], q[:, 1]])
    pool.lock_initialised()
    assert pool.locked.tolist() == [True, False, False]
    before = (pool.bases.clone(), pool.count.clone(), pool.age_counter.clone(), pool.age_threshold.clone())
    far = torch.randn(s, generator=g)
    far = far - q[:, :2] @ (q[:, :2].T @ far)
    for vec in (q[:, 0], far / far.norm()):            # would age, would expand
        maintain(pool, [0], vec[None])
    after = (pool.bases, pool.count, pool.age_counter, pool.age_threshold)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    set_unit(pool, 1, [q[:, 2]])                       # an unlocked unit still expands
    maintain(pool, [1], (far / far.norm())[None])
    assert int(pool.count[1]) == 2


@pytest.mark.parametrize("seed", range(6))
def test_bulk_countdown_equals_the_per_sample_loop(seed, monkeypatch):
    """maintain's one-step countdown (`_age_in_bulk`, taken when no sample expands a basis and
    no countdown reaches 0) leaves the pool exactly as the per-sample loop does, over batches
    that mix that case with expansions, renewals, locked units and zero hashes."""
    g = torch.Generator().manual_seed(seed)
    fast = make_pool(M=5, m=3, s=S, T0=4, rate=1.5, tau_expand=0.3)
    for u, n in enumerate([1, 2, 3, 3, 0]):
        set_unit(fast, u, [E[(u + k) % S] for k in range(n)])
    fast.locked[2] = seed % 2 == 0
    slow = copy.deepcopy(fast)
    taken = []                                  # what the bulk step answered for `fast`
    real = BasisPool._age_in_bulk

    def bulk_for_fast_only(self, *args):        # `slow` always takes the per-sample loop
        if self is not fast:
            return False
        taken.append(real(self, *args))
        return taken[-1]

    monkeypatch.setattr(BasisPool, "_age_in_bulk", bulk_for_fast_only)
    for _ in range(40):
        n = int(torch.randint(1, 9, (1,), generator=g))
        sel = torch.randint(0, 5, (n,), generator=g)
        h = torch.randn(n, S, generator=g)
        h[torch.rand(n, generator=g) < 0.1] = 0.0
        h = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
        maintain(fast, sel, h)
        maintain(slow, sel, h)
        for name, buf in fast.named_buffers():
            assert torch.equal(buf, dict(slow.named_buffers())[name]), name
    assert any(taken) and not all(taken)      # both ways were exercised


@pytest.mark.parametrize("seed", range(4))
def test_residue_node_gives_autograds_bits(seed):
    """The residue's one-node backward (the projector applied to the incoming gradient) gives
    the very bits autograd gives for the same expression recorded op by op."""
    g = torch.Generator().manual_seed(seed)
    M, m, s, n = 4, 3, 300, 16
    flat = torch.linalg.qr(torch.randn(s, M * m, generator=g))[0].T.contiguous()
    h0 = torch.randn(n, s, generator=g)
    mine = torch.randint(0, M, (n,), generator=g)[:, None] == torch.arange(M)
    grad = torch.randn(n, s, generator=g)
    pool = make_pool(M, m, s)
    pool.bases.copy_(flat.view(M, m, s))

    h = h0.clone().requires_grad_()
    coef = (h.detach() @ flat.T).view(n, M, m)
    r = pool._residue(h, coef, mine, pool.bases)
    r.backward(grad)

    h_ref = h0.clone().requires_grad_()
    r_ref = h_ref - ((h_ref @ flat.T).view(n, M, m) * mine[..., None]).flatten(1) @ flat
    r_ref.backward(grad)
    assert torch.equal(r, r_ref)
    assert torch.equal(h.grad, h_ref.grad)
    assert not torch.equal(h.grad, grad)      # (the projection did change the gradient)
