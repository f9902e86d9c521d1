"""Eq. 7: unit u_k's parameter gradients are scaled per sample by min(1, ||r_{k-1}||); nothing else is."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import random_images, randomise_bn, trained_model
from hrn_hw.reference import scaled_grad
from hrn_hw.reference.hashing import normalised_hash
from hrn_hw.reference.hrn import HRN, pixels_to_input
from hrn_hw.reference.units import ConvUnit


# ---- the ops of reference/scaled_grad.py against plain autograd -----------------------------

def _per_sample_param_grads(fn, x, params, G):
    """Gradient of sum(fn(x_b) * G_b) w.r.t. params, for each sample b separately (plain ops)."""
    out = []
    for b in range(x.shape[0]):
        y = fn(x[b:b + 1])
        out.append(torch.autograd.grad((y * G[b:b + 1]).sum(), params))
    return out


@pytest.mark.parametrize("stride,padding,bias", [(1, 0, True), (3, 2, True), (2, 1, False)])
def test_scaled_conv2d_matches_per_sample_autograd(stride, padding, bias):
    g = torch.Generator().manual_seed(0)
    B = 5
    x = torch.randn(B, 3, 11, 11, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    c = torch.tensor([0.3, 1.0, 0.0, 0.77, 0.05], dtype=torch.float64)
    params = [w] + ([b] if bias else [])

    y = scaled_grad.conv2d(x, w, b, stride, padding, c)
    ref = F.conv2d(x, w, b, stride, padding)
    torch.testing.assert_close(y, ref)                     # forward unchanged
    G = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((y * G).sum(), [x] + params)
    plain = torch.autograd.grad((ref * G).sum(), [x] + params)
    torch.testing.assert_close(grads[0], plain[0])          # input gradient NOT scaled

    per = _per_sample_param_grads(lambda xb: F.conv2d(xb, w, b, stride, padding), x, params, G)
    for i, p in enumerate(params):
        expect = sum(float(c[k]) * per[k][i] for k in range(B))
        torch.testing.assert_close(grads[1 + i], expect)
        # and it really differs from the unscaled gradient
        assert (grads[1 + i] - plain[1 + i]).abs().max() > 1e-3


def test_scaled_channel_affine_matches_per_sample_autograd():
    g = torch.Generator().manual_seed(1)
    B = 4
    x = torch.randn(B, 6, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0.9, 0.2, 1.0, 0.5], dtype=torch.float64)

    def plain_fn(xb):
        return xb * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)

    y = scaled_grad.channel_affine(x, gamma, beta, c)
    torch.testing.assert_close(y, plain_fn(x))
    G = torch.randn(y.shape, generator=g, dtype=torch.float64)
    gx, gg, gb = torch.autograd.grad((y * G).sum(), [x, gamma, beta])
    px, pg, pb = torch.autograd.grad((plain_fn(x) * G).sum(), [x, gamma, beta])
    torch.testing.assert_close(gx, px)
    per = _per_sample_param_grads(plain_fn, x, [gamma, beta], G)
    torch.testing.assert_close(gg, sum(float(c[k]) * per[k][0] for k in range(B)))
    torch.testing.assert_close(gb, sum(float(c[k]) * per[k][1] for k in range(B)))
    assert (gg - pg).abs().max() > 1e-3 and (gb - pb).abs().max() > 1e-3


def test_scale_none_is_plain_and_scale_gets_no_gradient():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 6, 6, generator=g, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, generator=g, requires_grad=True)
    torch.testing.assert_close(scaled_grad.conv2d(x, w, None, 1, 1, None), F.conv2d(x, w, None, 1, 1))
    c = torch.tensor([0.5, 0.25], requires_grad=True)
    y = scaled_grad.conv2d(x, w, None, 1, 1, c)
    y.sum().backward()
    assert c.grad is None or torch.all(c.grad == 0)
    ones = scaled_grad.conv2d(x, w, None, 1, 1, torch.ones(2))
    gw1, = torch.autograd.grad(ones.sum(), [w])
    gw0, = torch.autograd.grad(F.conv2d(x, w, None, 1, 1).sum(), [w])
    torch.testing.assert_close(gw1, gw0)                     # factor 1 == unscaled


def test_conv_unit_scales_all_parameter_gradients_per_sample():
    """A whole unit (conv, BN affine in eval mode, LeakyReLU, pad-to-kernel, channel folding)."""
    torch.manual_seed(3)
    layers = [{"type": "conv", "out_channels": 4, "kernel": 5, "stride": 3, "padding": 2},
              {"type": "batchnorm"}, {"type": "leaky_relu", "slope": 0.01}, {"type": "maxpool", "kernel": 2}]
    unit = ConvUnit(1, layers).double().eval()
    bn = unit.layers[1]
    with torch.no_grad():                                    # non-trivial BN statistics/affine
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    x = torch.rand(3, 16, 10, 10, dtype=torch.float64, requires_grad=True)   # folded to 1 channel
    c = torch.tensor([0.1, 0.6, 1.0], dtype=torch.float64)
    params = list(unit.parameters())
    G = torch.randn(unit(x).shape, dtype=torch.float64)
    grads = torch.autograd.grad((unit(x, c) * G).sum(), [x] + params)
    plain = torch.autograd.grad((unit(x) * G).sum(), [x] + params)
    torch.testing.assert_close(grads[0], plain[0])
    per = _per_sample_param_grads(lambda xb: unit(xb), x, params, G)
    for i in range(len(params)):
        torch.testing.assert_close(grads[1 + i], sum(float(c[k]) * per[k][i] for k in range(3)))
        assert float(plain[1 + i].abs().max()) > 0


# ---- Eq. 7 inside the HRN ---------------------------------------------------------------------

def twin(model, grad_scaling: bool) -> HRN:
    """A rebuilt copy of `model` (same state_dict) whose config sets hrn.grad_scaling."""
    cfg = dataclasses.replace(model.cfg, hrn=dataclasses.replace(model.cfg.hrn, grad_scaling=grad_scaling))
    other = HRN(cfg, seed=model.seed, unit_groups=list(model.unit_groups),
                hash_seeds=[int(v) for v in model.hash_seeds])
    for _ in model.heads:
        other.add_head(model.heads[0].out.out_features)
    other.load_state_dict(model.state_dict())
    return other


def train_mode_deterministic(model):
    """Training mode (Eq. 7 is training only) with the head's dropout off."""
    model.train()
    for head in model.heads:
        head.eval()
    return model


def run_and_grad(model, x, labels, oracle):
    """Route x (pixels as a float leaf, so its gradient is seen), Eq. 6 loss summed over the batch."""
    xin = (x.to(torch.float64) / 256.0).float().requires_grad_(True)
    logits, routing = model(xin, 0, oracle=oracle)
    loss = F.cross_entropy(logits, labels, reduction="sum") + model.cfg.hrn.residue_l1 * routing.residue_l1.sum()
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    return routing, grads, xin.grad.clone()


def unit_grads(grads, u):
    return {n: g for n, g in grads.items() if n.startswith(f"units.{u}.")}


def pick_full_depth_sample(model, seed):
    """An image whose (frozen-basis) route reaches full depth, so two units are run."""
    x = random_images(32, seed)
    with torch.no_grad():
        r = copy.deepcopy(model).eval().route_batched(x)
    full = ((r.routes >= 0).sum(1) == model.d).nonzero().flatten()
    assert len(full) > 0
    return x[int(full[0]):int(full[0]) + 1]


def _unit_vector_at_cos(h, cos, g):
    """A unit vector b with b . h = cos (h a unit vector)."""
    v = torch.randn(h.shape, generator=g)
    v = v - (v @ h) * h
    return cos * h + (1 - cos * cos) ** 0.5 * v / v.norm()


@torch.no_grad()
def steer(model, x):
    """Give the units on x's path one-vector bases at chosen angles to x's hashes (as the gradient
    tests route x: in training mode), so that ||r_0|| and ||r_1||, the Eq. 7 factors to check,
    are clearly below 1. Returns (u1, u2, expected factors)."""
    g = torch.Generator().manual_seed(0)
    probe = train_mode_deterministic(copy.deepcopy(model))
    xin = pixels_to_input(x)
    h0 = normalised_hash(xin, model.seed_of(0), model.s)[0]
    u1 = int(probe.route_batched(x).routes[0, 0])
    h1 = normalised_hash(probe.units[u1](xin), model.seed_of(u1 + 1), model.s)[0]
    u2 = next(u for u in range(model.num_units) if u != u1)
    factors = []
    for u, h, rivals in ((u1, h0, [v for v in range(model.num_units) if v != u1]),
                         (u2, h1, [v for v in range(model.num_units) if v not in (u1, u2)])):
        # beat every rival's energy by a margin, but stay well below 1
        best_rival = max(float((model.pool.bases[v] @ h).square().sum()) for v in rivals)
        cos = max(0.6, best_rival ** 0.5 + 0.1)
        assert cos < 0.95
        model.pool.bases[u].zero_()
        model.pool.bases[u, 0] = _unit_vector_at_cos(h, cos, g)
        model.pool.count[u] = 1
        factors.append((1 - cos * cos) ** 0.5)
    return u1, u2, factors


@pytest.mark.parametrize("oracle", [False, True])
@pytest.mark.parametrize("seed,no_bn,steered", [(0, False, True), (4, True, True), (0, False, False)])
def test_eq7_scales_unit_weight_gradients_by_the_selecting_residue(oracle, seed, no_bn, steered):
    base = trained_model(seed=seed, no_bn=no_bn)
    x = pick_full_depth_sample(base, seed + 50)
    if steered:
        u1, u2, expected = steer(base, x)
    label = torch.tensor([1])
    on = train_mode_deterministic(twin(base, True))
    off = train_mode_deterministic(twin(base, False))
    assert on.cfg.hrn.grad_scaling and not off.cfg.hrn.grad_scaling

    r_on, g_on, dx_on = run_and_grad(on, x, label, oracle)
    r_off, g_off, dx_off = run_and_grad(off, x, label, oracle)
    # the two runs routed identically from identical states, and maintained the bases identically
    assert torch.equal(r_on.routes, r_off.routes)
    torch.testing.assert_close(r_on.embedding, r_off.embedding, rtol=0, atol=0)
    for k, v in on.pool.state_dict().items():
        assert torch.equal(v, off.pool.state_dict()[k]), k

    route = [u for u in r_on.routes[0].tolist() if u >= 0]
    assert len(route) == on.d                                 # d selections, d - 1 units run
    factors = []
    for k, u in enumerate(route[:-1]):
        c = min(1.0, float(r_on.residue_norms[0, k]))
        factors.append(c)
        gu_on, gu_off = unit_grads(g_on, u), unit_grads(g_off, u)
        assert gu_on.keys() == gu_off.keys() and gu_on
        assert all(gu_off[n] is not None for n in gu_off)
        # (a conv bias right before train-mode BN has a true gradient of 0: float noise only)
        scale = max(float(gr.abs().max()) for gr in gu_off.values())
        assert scale > 0
        for name in gu_on:
            torch.testing.assert_close(gu_on[name], c * gu_off[name], rtol=1e-4, atol=1e-5 * scale)
            if float(gu_off[name].abs().max()) > 1e-3 * scale:
                assert not torch.allclose(gu_on[name], gu_off[name], rtol=1e-5, atol=0), name
    assert all(c < 1.0 for c in factors), factors
    if steered:
        assert route[:2] == [u1, u2]
        assert factors == pytest.approx(expected, abs=1e-4)
        assert max(factors) < 0.81
    # units not run (the last one selected and the unvisited ones) receive no gradient
    for u in range(on.num_units):
        if u not in route[:-1]:
            for name, gr in unit_grads(g_on, u).items():
                assert gr is None or float(gr.abs().max()) == 0, name
    # nothing upstream of the units' parameters is scaled: input and head gradients are equal
    assert float(dx_off.abs().max()) > 0
    torch.testing.assert_close(dx_on, dx_off, rtol=1e-5, atol=1e-6 * float(dx_off.abs().max()))
    for name in g_on:
        if name.startswith("heads."):
            torch.testing.assert_close(g_on[name], g_off[name], rtol=1e-5, atol=1e-8)


def test_eq7_is_per_sample_in_a_batch():
    """Batched path, several samples sharing units: grad(on) == sum_b c_{b,u} grad_b(off)."""
    base = trained_model(seed=4, no_bn=True)                 # no BN: samples independent in units
    x = random_images(10, 77)
    labels = torch.tensor([0, 1] * 5)
    on = train_mode_deterministic(twin(base, True))
    off = train_mode_deterministic(twin(base, False))
    for m in (on, off):
        m.pool.maintain = lambda *a, **k: None                # frozen bases: batch == one by one
    before = {k: v.clone() for k, v in on.pool.state_dict().items()}
    r_on, g_on, dx_on = run_and_grad(on, x, labels, oracle=False)
    assert all(torch.equal(v, on.pool.state_dict()[k]) for k, v in before.items())

    expect = {n: torch.zeros_like(p) for n, p in on.named_parameters() if n.startswith("units.")}
    unscaled = {n: torch.zeros_like(v) for n, v in expect.items()}
    dx_expect = torch.zeros_like(dx_on)
    for b in range(10):
        r_b, g_b, dx_b = run_and_grad(off, x[b:b + 1], labels[b:b + 1], oracle=False)
        assert torch.equal(r_b.routes[0], r_on.routes[b])
        dx_expect[b] = dx_b[0]
        route = [u for u in r_b.routes[0].tolist() if u >= 0]
        for k, u in enumerate(route[:-1]):
            c = min(1.0, float(r_b.residue_norms[0, k]))
            assert c < 1.0
            for name, gr in unit_grads(g_b, u).items():
                expect[name] += c * gr
                unscaled[name] += gr
    shared = {u for u in range(on.num_units) if int((r_on.routes[:, :-1] == u).sum()) >= 2}
    assert shared, "the batch should reuse some unit for several samples"
    for name, gr in expect.items():
        got = g_on[name]
        if float(gr.abs().max()) == 0:
            assert got is None or float(got.abs().max()) == 0, name
        else:
            torch.testing.assert_close(got, gr, rtol=1e-4, atol=1e-5 * float(gr.abs().max()))
            assert not torch.allclose(got, unscaled[name], rtol=1e-3, atol=0), name
    torch.testing.assert_close(dx_on, dx_expect, rtol=1e-4, atol=1e-5 * float(dx_expect.abs().max()))


@pytest.mark.parametrize("oracle", [False, True])
def test_no_scaling_outside_training(oracle):
    """Eq. 7 is a training rule: in eval mode the unit gradients are the plain ones."""
    base = trained_model(seed=0)
    x = pick_full_depth_sample(base, 50)
    on, off = twin(base, True).eval(), twin(base, False).eval()
    r_on, g_on, _ = run_and_grad(on, x, torch.tensor([0]), oracle)
    r_off, g_off, _ = run_and_grad(off, x, torch.tensor([0]), oracle)
    assert torch.equal(r_on.routes, r_off.routes)
    assert float(r_on.residue_norms[0, 0]) < 1.0
    run = [u for u in r_on.routes[0].tolist() if u >= 0][:-1]
    assert run
    for u in run:
        for name, gr in unit_grads(g_off, u).items():
            assert gr is not None
            torch.testing.assert_close(g_on[name], gr, rtol=0, atol=0)


# ---- the fused unit block (conv -> BN -> affine -> act as one autograd node) --------------------

UNIT_LAYERS = [{"type": "conv", "out_channels": 6, "kernel": 5, "stride": 3, "padding": 2},
               {"type": "batchnorm"}, {"type": "leaky_relu", "slope": 0.01}]


def _unit_pair(train: bool, layers=UNIT_LAYERS, seed: int = 5):
    torch.manual_seed(seed)
    unit = ConvUnit(1, layers).train(train)
    randomise_bn(unit.layers[1])
    assert unit._fusable()
    return unit, copy.deepcopy(unit)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("n", [1, 7, scaled_grad.SMALL_BATCH + 9])    # both convolution kernels
@pytest.mark.parametrize("scaled", [True, False])
def test_fused_unit_equals_layer_by_layer(train, n, scaled):
    """Outputs, input and parameter gradients (Eq. 7 scaled or not) and BN running statistics."""
    fused, plain = _unit_pair(train)
    x = torch.rand(n, 16, 10, 10, requires_grad=True)
    c = torch.rand(n) if scaled else None
    G = torch.randn(n, 6, 4, 4)
    out_f, out_p = fused(x, c), plain.forward_unfused(x, c)
    torch.testing.assert_close(out_f, out_p, rtol=0, atol=0)
    g_f = torch.autograd.grad((out_f * G).sum(), [x, *fused.parameters()])
    g_p = torch.autograd.grad((out_p * G).sum(), [x, *plain.parameters()])
    # (the input gradient is divided by c, so rounding grows as 1/c; a conv bias before
    # train-mode BN has a true gradient of 0, float noise only)
    scale = max(float(b.abs().max()) for b in g_p)
    for a, b in zip(g_f, g_p):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * scale)
    for (k, a), b in zip(fused.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    with torch.no_grad():              # the autograd-free eval block (BN folded into the conv)
        fused.eval(), plain.eval()
        torch.testing.assert_close(fused(x), plain.forward_unfused(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("n", [3, scaled_grad.SMALL_BATCH + 9])
def test_fused_unit_matches_torch_modules(train, n):
    """Unscaled, the fused block is nn.Conv2d -> nn.BatchNorm2d -> LeakyReLU, gradients included."""
    fused, _ = _unit_pair(train)
    conv, bn = fused.layers[0], fused.layers[1]
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5, 3, 2), torch.nn.BatchNorm2d(6), torch.nn.LeakyReLU(0.01))
    ref.load_state_dict({"0.weight": conv.weight, "0.bias": conv.bias, "1.weight": bn.weight, "1.bias": bn.bias,
                         "1.running_mean": bn.running_mean, "1.running_var": bn.running_var,
                         "1.num_batches_tracked": torch.tensor(0)})
    ref.train(train)
    x = torch.rand(n, 1, 28, 28, requires_grad=True)
    out_f, out_r = fused(x), ref(x)
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-6)
    G = torch.randn(out_r.shape)
    g_f = torch.autograd.grad((out_f * G).sum(), [x, conv.weight, conv.bias, bn.weight, bn.bias])
    g_r = torch.autograd.grad((out_r * G).sum(), [x, *ref.parameters()])
    scale = max(float(b.abs().max()) for b in g_r)
    for a, b in zip(g_f, g_r):   # (a conv bias before train-mode BN has a true gradient of 0)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(bn.running_mean, ref[1].running_mean)
    torch.testing.assert_close(bn.running_var, ref[1].running_var)
