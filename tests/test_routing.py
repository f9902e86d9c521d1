"""Routing on frozen bases: batched fast path == per-sample oracle == a by-hand walk of section 2."""

from __future__ import annotations


import pytest
import torch

from conftest import random_images, trained_model
from hrn_hw.reference.hashing import normalised_hash
from hrn_hw.reference.hrn import pixels_to_input

MODELS = [
    dict(seed=0),                                              # the paper's config, 4 units
    dict(seed=1, extra_units=4),                               # 8 units, two unit groups
    dict(seed=2, extra_units=2, tau_expand=0.6, aging_start=2),  # multi-vector, aged bases
]


def frozen(spec):
    model = trained_model(**spec)
    model.eval()
    return model


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@torch.no_grad()
def by_hand(model, x):
    """Section 2 of docs/design.md for one sample at a time, written out independently (eval only)."""
    pool, s, d, tau = model.pool, model.s, model.d, model.tau_d
    y_all = pixels_to_input(x)
    routes, embs = [], []
    for b in range(x.shape[0]):
        y, hid, used, emb, route = y_all[b:b + 1], 0, set(), torch.zeros(s), []
        for k in range(d):
            h = normalised_hash(y, model.seed_of(hid), s)[0]
            cands = [u for u in range(model.num_units) if int(pool.count[u]) > 0 and u not in used]
            if not cands:
                break
            energy = {u: float((pool.bases[u] @ h).square().sum()) for u in cands}
            best = max(energy.values())
            u = min(c for c in cands if energy[c] == best)
            B = pool.bases[u, :int(pool.count[u])]
            r = h - (B @ h) @ B
            emb += r
            route.append(u)
            used.add(u)
            if k == d - 1 or float(r.norm()) < tau:
                break
            y = model.units[u](y)
            hid = u + 1
        routes.append(route + [-1] * (d - len(route)))
        embs.append(emb)
    return torch.tensor(routes), torch.stack(embs)


def tau_d_stopper(model, x, at_step, avoid=()):
    """Edit a unit's basis so that sample x gets ||r|| ~ 1e-8 < tau_d at step `at_step` (0 or 1):
    at step 0 its first unit, at step 1 another unit not in `avoid`, gets the basis [h_k(x)]
    (a single unit vector, so orthonormal). Returns the unit edited."""
    with torch.no_grad():
        r = model.route_oracle(x)
        first = int(r.routes[0, 0])
        if at_step == 0:
            h = normalised_hash(pixels_to_input(x), model.seed_of(0), model.s)[0]
            target = first
        else:
            y1 = model.units[first](pixels_to_input(x))
            h = normalised_hash(y1, model.seed_of(first + 1), model.s)[0]
            target = next(u for u in range(model.num_units) if u != first and u not in avoid)
    model.pool.bases[target].zero_()
    model.pool.bases[target, 0] = h
    model.pool.count[target] = 1
    return target


def batch_for(n, seed):
    """n random images, the second one all-zero."""
    x = random_images(n, seed)
    if n >= 2:
        x[1] = 0
    return x


def check_paths_agree(model, x):
    before = state(model)
    with torch.no_grad():
        rb = model.route_batched(x)
        ro = model.route_oracle(x)
    assert_same_state(before, state(model))                 # eval never touches the bases
    assert torch.equal(rb.routes, ro.routes)
    torch.testing.assert_close(rb.embedding, ro.embedding, rtol=0, atol=1e-5)
    torch.testing.assert_close(rb.residue_norms, ro.residue_norms, rtol=0, atol=1e-5)
    torch.testing.assert_close(rb.residue_l1, ro.residue_l1, rtol=1e-5, atol=1e-4)
    hr, he = by_hand(model, x)
    assert torch.equal(rb.routes, hr)
    torch.testing.assert_close(rb.embedding, he, rtol=0, atol=1e-5)
    # the autograd-free single-sample inference path (what route() takes for one eval sample)
    with torch.no_grad():
        rs = [model.route(x[b:b + 1]) for b in range(x.shape[0])]
    assert_same_state(before, state(model))
    assert torch.equal(torch.cat([r.routes for r in rs]), ro.routes)
    torch.testing.assert_close(torch.cat([r.embedding for r in rs]), ro.embedding, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat([r.residue_norms for r in rs]), ro.residue_norms, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat([r.residue_l1 for r in rs]), ro.residue_l1, rtol=1e-5, atol=1e-4)
    return rb


def check_route_structure(model, routing):
    d, tau = model.d, model.tau_d
    init = model.pool.count > 0
    for b, route in enumerate(routing.routes.tolist()):
        taken = [u for u in route if u >= 0]
        L = len(taken)
        assert route[:L] == taken and all(u == -1 for u in route[L:]), route   # no gaps
        assert L <= d
        assert len(set(taken)) == L, f"a unit repeats in {route}"
        assert all(bool(init[u]) for u in taken), f"uninitialised unit used in {route}"
        norms = routing.residue_norms[b].tolist()
        assert all(n == 0 for n in norms[L:])
        assert all(n >= tau for n in norms[:max(L - 1, 0)]), (route, norms)  # no stop too early
        if 0 < L < d:      # it stopped: on tau_d, or because nothing selectable is left
            assert norms[L - 1] < tau or int(init.sum()) == L, (route, norms)


# ---- batched == oracle == by hand ------------------------------------------------------------

@pytest.mark.parametrize("spec", MODELS, ids=["paper", "8units", "aged"])
@pytest.mark.parametrize("n", [1, 2, 7, 33])
def test_batched_and_oracle_agree_on_frozen_bases(spec, n):
    model = frozen(spec)
    x = batch_for(n, seed=100 + n)
    if n >= 4:
        t0 = tau_d_stopper(model, x[2:3], at_step=0)
        tau_d_stopper(model, x[3:4], at_step=1, avoid={t0})
    rb = check_paths_agree(model, x)
    check_route_structure(model, rb)
    if n >= 4:
        lengths = (rb.routes >= 0).sum(1)
        assert int(lengths[2]) == 1 and float(rb.residue_norms[2, 0]) < model.tau_d
        assert int(lengths[3]) == 2 and float(rb.residue_norms[3, 1]) < model.tau_d
        assert int(lengths.max()) == model.d                 # the other samples go the full depth
        assert len({tuple(r) for r in rb.routes.tolist()}) > 2  # several distinct routes


@pytest.mark.parametrize("spec", MODELS, ids=["paper", "8units", "aged"])
def test_all_zero_image_stops_after_step_0_with_zero_embedding(spec):
    model = frozen(spec)
    x = random_images(5, 7)
    x[0] = 0
    x[3] = 0
    rb = check_paths_agree(model, x)
    lowest = int((model.pool.count > 0).nonzero()[0])
    for b in (0, 3):
        assert rb.routes[b].tolist() == [lowest] + [-1] * (model.d - 1)
        assert torch.equal(rb.embedding[b], torch.zeros(model.s))
        assert float(rb.residue_norms[b].abs().sum()) == 0.0 and float(rb.residue_l1[b]) == 0.0
    assert int((rb.routes[[1, 2, 4]] >= 0).sum(1).min()) > 1


def test_routes_do_not_depend_on_batch_composition():
    model = frozen(MODELS[1])
    x = random_images(12, 11)
    with torch.no_grad():
        full = model.route_batched(x)
        for b in range(12):
            one = model.route_batched(x[b:b + 1])
            assert torch.equal(one.routes[0], full.routes[b])
            torch.testing.assert_close(one.embedding[0], full.embedding[b], rtol=0, atol=1e-5)
        perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
        shuffled = model.route_batched(x[perm])
    assert torch.equal(shuffled.routes, full.routes[perm])
    torch.testing.assert_close(shuffled.embedding, full.embedding[perm], rtol=0, atol=1e-5)


# ---- uninitialised units ---------------------------------------------------------------------

def wipe(model, units):
    for u in units:
        model.pool.bases[u].zero_()
        model.pool.count[u] = 0


@pytest.mark.parametrize("oracle", [False, True])
def test_eval_routing_never_uses_uninitialised_units(oracle):
    model = frozen(MODELS[1])                                 # 8 units
    wipe(model, [0, 3, 6])
    x = random_images(24, 5)
    with torch.no_grad():
        r = model.route(x, oracle=oracle)
    assert not torch.isin(r.routes, torch.tensor([0, 3, 6])).any()
    check_route_structure(model, r)
    check_paths_agree(model, x)
    wipe(model, [1, 2, 4, 5])                                 # only units 7 initialised ... and none
    wipe(model, [7])
    with torch.no_grad():
        r = model.route(x, oracle=oracle)
    assert torch.all(r.routes == -1) and torch.equal(r.embedding, torch.zeros_like(r.embedding))


class CallCounter:
    """Counts, per unit, the samples each unit processed (forward hooks)."""

    def __init__(self, model):
        self.samples = [0] * model.num_units
        self.handles = [unit.register_forward_hook(self._hook(i)) for i, unit in enumerate(model.units)]

    def _hook(self, i):
        def hook(mod, args, out):
            self.samples[i] += args[0].shape[0]
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("oracle", [False, True])
@pytest.mark.parametrize("survivor", [0, 2, 5])
def test_single_initialised_unit_stops_after_one_selection(oracle, survivor):
    model = frozen(MODELS[1])
    wipe(model, [u for u in range(model.num_units) if u != survivor])
    x = random_images(9, 13)
    x[4] = 0
    calls = CallCounter(model)
    with torch.no_grad():
        r = model.route(x, oracle=oracle)
    calls.close()
    assert torch.all(r.routes[:, 0] == survivor) and torch.all(r.routes[:, 1:] == -1)
    assert sum(calls.samples) == 0                            # the last unit is never run
    assert torch.all(r.residue_norms[:, 1:] == 0)
    nz = [b for b in range(9) if b != 4]
    assert torch.all(r.residue_norms[nz, 0] > 0)


@pytest.mark.parametrize("oracle", [False, True])
def test_each_sample_runs_one_unit_fewer_than_it_selects(oracle):
    model = frozen(MODELS[1])
    x = random_images(16, 17)
    x[0] = 0
    tau_d_stopper(model, x[1:2], at_step=1)
    calls = CallCounter(model)
    with torch.no_grad():
        r = model.route(x, oracle=oracle)
    calls.close()
    sel = (r.routes >= 0).sum(1)
    # per unit: the samples that selected it and then selected another one
    expect = [0] * model.num_units
    for route in r.routes.tolist():
        taken = [u for u in route if u >= 0]
        for u in taken[:-1]:
            expect[u] += 1
    assert calls.samples == expect
    assert sum(calls.samples) == int((sel - 1).clamp(min=0).sum())
    assert int(sel.max()) == model.d and sum(calls.samples) <= x.shape[0] * (model.d - 1)


@pytest.mark.parametrize("mode", ["train", "eval", "eval-no-grad", "oracle"])
def test_empty_batch_routes_nothing(mode):
    """A batch of no images gives empty outputs of the right shapes on every path."""
    model = trained_model(seed=0)
    model.train(mode == "train")
    x = torch.zeros(0, 1, 28, 28, dtype=torch.uint8)
    with torch.set_grad_enabled(mode != "eval-no-grad"):
        logits, r = model(x, 0, oracle=mode == "oracle")
    assert logits.shape == (0, 2) and r.embedding.shape == (0, model.s)
    assert r.routes.shape == (0, model.d) and r.residue_norms.shape == (0, model.d)
    assert r.residue_l1.shape == (0,)
