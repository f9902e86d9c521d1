"""The reference's inference fast path: the cached BN-folded eval block of a unit, and batched
eval routing (frozen-basis selection) against the per-sample oracle after further training."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import random_images, trained_model
from hrn_hw.train import build_optimizer
from hrn_hw.reference.units import ConvUnit

LAYERS = [{"type": "conv", "out_channels": 6, "kernel": 5, "stride": 3, "padding": 2},
          {"type": "batchnorm"}, {"type": "leaky_relu", "slope": 0.01}]


def make_unit(seed: int = 3) -> ConvUnit:
    torch.manual_seed(seed)
    unit = ConvUnit(1, LAYERS).eval()
    with torch.no_grad():
        bn = unit.layers[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return unit


def check_eval(unit: ConvUnit, x: torch.Tensor) -> None:
    """The cached eval block equals the layer by layer one on the unit's current state."""
    x = x.to(unit.layers[0].weight.dtype)
    with torch.no_grad():
        fast = unit(x)
        plain = unit.forward_unfused(x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    with torch.no_grad():       # forward_unfused dropped the cache: the rebuilt one agrees too
        torch.testing.assert_close(unit(x), fast, rtol=0, atol=0)


def train_step(unit: ConvUnit, x: torch.Tensor, **opt_kw) -> None:
    unit.train()
    opt = torch.optim.Adam(unit.parameters(), lr=0.05, **opt_kw)
    unit(x).square().mean().backward()       # batch statistics: running stats change in place
    opt.step()
    unit.eval()


@pytest.mark.parametrize("change", ["train_foreach", "train_fused", "inplace_param", "inplace_stat",
                                    "load_state_dict", "replace_buffer", "to_float64"])
def test_folded_eval_block_follows_every_change(change):
    unit, x = make_unit(), torch.rand(5, 1, 28, 28)
    check_eval(unit, x)
    with torch.no_grad():
        before = unit(x)
    if change == "train_foreach":
        train_step(unit, x, foreach=True)
    elif change == "train_fused":      # fused optimisers bump no version counter
        train_step(unit, x, fused=True)
    elif change == "inplace_param":
        with torch.no_grad():
            unit.layers[0].weight.mul_(1.5)
    elif change == "inplace_stat":
        unit.layers[1].running_var.add_(0.5)
    elif change == "load_state_dict":
        unit.load_state_dict(make_unit(seed=9).state_dict())
    elif change == "replace_buffer":
        unit.layers[1].running_mean = torch.full((6,), 0.3)
    else:
        unit.to(torch.float64)
    check_eval(unit, x)                       # (the first call after the change is checked)
    with torch.no_grad():
        after = unit(x.to(unit.layers[0].weight.dtype))
    assert after.dtype != before.dtype or not torch.allclose(after, before)   # the change matters


def test_folded_eval_block_is_reused_while_nothing_changes():
    unit, x = make_unit(), torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        unit(x)
        cached = unit._eval_cache
        unit(x[:1])
        unit.train()(x[:1, :, :3, :3])      # a 1x1 single sample: running statistics, no update
    assert unit._eval_cache is cached


@pytest.mark.parametrize("spec", [dict(seed=0), dict(seed=1, extra_units=4)], ids=["paper", "8units"])
def test_batched_eval_equals_oracle_between_training_steps(spec):
    """Train, route (fills the eval caches), train again: eval routing sees the new weights."""
    model = trained_model(**spec)
    opt = build_optimizer(list(model.parameters()), model.cfg)
    x = random_images(48, 21)
    for step in range(3):
        model.train()
        logits, routing = model(x[:16], 0)
        loss = logits.logsumexp(1).mean() + routing.residue_l1.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        fresh = copy.deepcopy(model)          # new storage: no cached folds carried over
        with torch.no_grad():
            rb, ro, rf = model.route(x), model.route(x, oracle=True), fresh.route(x)
        for other in (ro, rf):
            assert torch.equal(rb.routes, other.routes)
            torch.testing.assert_close(rb.embedding, other.embedding, rtol=0, atol=1e-5)
            torch.testing.assert_close(rb.residue_norms, other.residue_norms, rtol=0, atol=1e-5)
            torch.testing.assert_close(rb.residue_l1, other.residue_l1, rtol=1e-5, atol=1e-4)
        assert int((rb.routes >= 0).sum(1).max()) == model.d


@pytest.mark.parametrize("n", [1, 9])
def test_inference_mode_routing_leaks_no_inference_tensors(n):
    """Eval routing without autograd runs in inference mode: what it returns and what it caches
    (hash tables, folded unit weights) are ordinary tensors, so training can follow."""
    from hrn_hw.reference import hashing
    model = trained_model(seed=0).eval()
    hashing._hash_tables_cpu.cache_clear()   # the tables are built inside inference mode below
    x = random_images(n, 4)
    with torch.no_grad():
        logits, routing = model(x, 0)
    assert torch.is_inference_mode_enabled() is False
    for t in (logits, *vars(routing).values()):
        assert not t.is_inference()
    routing.embedding.add_(1.0)                # in place, outside inference mode
    for unit in model.units:
        assert unit._eval_cache is None or not any(t.is_inference() for t in unit._eval_cache[2])
    model.train()
    logits, routing = model(random_images(16, 5), 0)
    (logits.logsumexp(1).mean() + routing.residue_l1.mean()).backward()   # saves the hash signs
    assert all(p.grad is not None for p in model.heads[0].parameters())


# ---- route_frozen (eval inference of a batch) == route_batched, bit for bit --------------------

def assert_identical(a, b):
    for key in vars(a):
        ta, tb = getattr(a, key), getattr(b, key)
        assert ta.dtype == tb.dtype and not ta.is_inference() and torch.equal(ta, tb), key
        # bit for bit (torch.equal takes -0.0 == 0.0): compare the raw bits too
        if ta.is_floating_point():
            assert torch.equal(ta.view(torch.int32), tb.view(torch.int32)), key


def frozen_paths(model, x):
    """route() of an eval batch without autograd (route_frozen in inference mode) and
    route_batched (the training path's arithmetic) on the same model."""
    with torch.no_grad():
        return model.route(x), model.route_batched(x)


@pytest.mark.parametrize("n", [2, 7, 33, 100])
@pytest.mark.parametrize("spec", ["paper", "8units", "aged"])
def test_route_frozen_is_route_batched_bit_for_bit(spec, n):
    from test_routing import MODELS, batch_for, frozen, tau_d_stopper
    model = frozen(MODELS[["paper", "8units", "aged"].index(spec)])
    x = batch_for(n, seed=300 + n)                  # (sample 1 all-zero: stops at step 0)
    if n >= 4:
        t0 = tau_d_stopper(model, x[2:3], at_step=0)
        tau_d_stopper(model, x[3:4], at_step=1, avoid={t0})
    fast, ref = frozen_paths(model, x)
    assert_identical(fast, ref)
    if n >= 4:
        lengths = (fast.routes >= 0).sum(1).tolist()
        assert lengths[1] == 1 and lengths[2] == 1 and lengths[3] == 2 and max(lengths) == model.d
    with torch.no_grad():                           # and the same logits through the head
        assert torch.equal(model(x, 0)[0], model.heads[0](ref.embedding))


@pytest.mark.parametrize("alive", [[], [5], [2, 6], [0, 1, 7]])
def test_route_frozen_with_few_initialised_units(alive):
    """Fewer selectable units than the depth (routes end when none is left), or none at all."""
    from test_routing import MODELS, frozen, wipe
    model = frozen(MODELS[1])
    wipe(model, [u for u in range(model.num_units) if u not in alive])
    x = random_images(20, 8)
    fast, ref = frozen_paths(model, x)
    assert_identical(fast, ref)
    assert int((fast.routes >= 0).sum(1).max()) == min(len(alive), model.d)


@pytest.mark.parametrize("where", ["step0", "step1"])
def test_route_frozen_when_samples_stop_early(where):
    """tau_d above every residue norm: every sample stops after step 0 (no unit runs); at the
    median step-1 norm: about half of the samples stop after step 1."""
    model = trained_model(seed=1, extra_units=4).eval()
    x = random_images(40, 12)
    with torch.no_grad():
        norms = model.route(x).residue_norms
    model.tau_d = 10.0 if where == "step0" else float(norms[:, 1].median())
    fast, ref = frozen_paths(model, x)
    assert_identical(fast, ref)
    lengths = (fast.routes >= 0).sum(1).tolist()
    assert set(lengths) == {1} if where == "step0" else {2, model.d} <= set(lengths)


def test_route_frozen_float_input_is_not_modified():
    model = trained_model(seed=0).eval()
    x = random_images(9, 3)
    xf = x.to(torch.float32) / 256.0
    keep = xf.clone()
    with torch.no_grad():
        a, b = model.route(xf), model.route(x)
    assert torch.equal(xf, keep)
    assert_identical(a, b)


def test_frozen_runner_is_forward_and_defers_to_the_module_when_needed():
    """The unit's eval runner gives forward's output bit for bit; it is the unit itself (so hooks
    run, a replaced forward is called, training layers train) wherever that shortcut would not."""
    unit, x = make_unit(), torch.rand(7, 1, 28, 28)
    with torch.inference_mode():
        run = unit.frozen_runner()
        assert run is not unit
        assert torch.equal(run(x), unit(x))
    handle = unit.register_forward_hook(lambda mod, args, out: None)
    assert unit.frozen_runner() is unit
    handle.remove()
    unit.layers[1].train()
    assert unit.frozen_runner() is unit
    unit.eval()
    unit.forward = lambda *a, **k: None
    assert unit.frozen_runner() is unit
    del unit.forward
    assert unit.frozen_runner() is not unit
    plain = ConvUnit(1, [LAYERS[0], LAYERS[2]]).eval()      # no batchnorm: nothing to fuse
    assert plain.frozen_runner() is plain


def test_route_frozen_runs_units_through_their_hooks():
    from test_routing import CallCounter
    model = trained_model(seed=0).eval()
    x = random_images(16, 6)
    calls = CallCounter(model)
    with torch.no_grad():
        r = model.route(x)
    calls.close()
    assert sum(calls.samples) == int(((r.routes >= 0).sum(1) - 1).clamp(min=0).sum())


def test_route_frozen_on_two_threads_is_bit_identical():
    """With two intra-op threads the inference path gives the same bits as route_batched on
    those threads, and leaves the thread count alone."""
    model = trained_model(seed=1, extra_units=4).eval()
    x = random_images(300, 14)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fast, ref = frozen_paths(model, x)
        assert_identical(fast, ref)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
