"""The compiled autograd nodes (reference/native_nodes.cpp) against their Python specifications:
every output, gradient and buffer bit for bit, node by node and over whole training runs; and
the loader's and `hrn-hw native`'s behaviour."""

from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import pairwise_config, random_images, randomise_bn, train_model

from hrn_hw.cli import main as cli_main
from hrn_hw.reference import native, scaled_grad
from hrn_hw.reference.bases import BasisPool
from hrn_hw.reference.hashing import feature_hash, normalise
from hrn_hw.reference.hrn import HRN
from hrn_hw.reference.units import ConvUnit


@pytest.fixture(scope="module")
def twins():
    """The compiled nodes of this source and torch (`make` builds them; built here if not), loaded
    whatever HRN_NATIVE says: these tests switch between both kinds of node themselves."""
    module = native.load()[0]
    if module is None:
        missing = native.missing_tools()
        assert not missing, f"cannot build the compiled nodes: {missing} not found"
        module = native.build()
    return module


def both(monkeypatch, twins, run):
    """run() with the Python nodes, then with the compiled ones: (python result, compiled result)."""
    monkeypatch.setattr(native, "nodes", lambda: None)
    python = run()
    monkeypatch.setattr(native, "nodes", lambda: twins)
    compiled = run()
    return python, compiled


def assert_same_bits(a, b, what=""):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        if x is None or y is None:
            assert x is None and y is None, f"{what}[{i}]: one side has no value"
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what}[{i}]"
        assert torch.equal(x, y), f"{what}[{i}]: values differ"


CPP_NODE = "torch::autograd::CppNode<(anonymous namespace)::{}>"


def node_name(t: torch.Tensor) -> str:
    return t.grad_fn.name()


@pytest.mark.parametrize("shape", [(5, 16, 10, 10), (3, 1, 28, 28), (1, 4, 3, 3)])
def test_feature_hash_twin(monkeypatch, twins, shape):
    g = torch.Generator().manual_seed(shape[0])
    y0, grad = torch.randn(*shape, generator=g), torch.randn(shape[0], 50, generator=g)

    def run():
        y = y0.clone().requires_grad_()
        out = feature_hash(y, 777, 50)
        out.backward(grad)
        return out.detach(), y.grad, node_name(out)

    (*py, py_node), (*cc, cc_node) = both(monkeypatch, twins, run)
    assert (py_node, cc_node) == ("_FeatureHashBackward", CPP_NODE.format("FeatureHash"))
    assert_same_bits(py, cc, "feature_hash")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,L,s", [(1, 784, 300), (7, 1600, 300), (256, 1600, 300), (33, 9, 300), (5, 5000, 50)])
def test_hash_add_kernel_makes_index_adds_additions(twins, threads, n, L, s):
    """The compiled scatter gives index_add_'s bits (the same additions in the same order), on
    rows of mixed magnitude, a transposed (non-contiguous) input and rows in blocks of four plus
    a remainder, on one and two threads."""
    from hrn_hw.reference.hashing import hash_tables
    g = torch.Generator().manual_seed(n + L)
    flat = torch.randn(L, n, generator=g).T * torch.logspace(-3, 3, n)[:, None]
    buckets, signs = hash_tables(99 + L, L, s)
    start = torch.randn(n, s, generator=g)
    was = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        want = start.clone().index_add_(1, buckets, flat * signs)
        got = start.clone()
        twins.hash_add_(got, flat, buckets, signs)
    finally:
        torch.set_num_threads(was)
    assert torch.equal(got, want)


def test_inference_paths_with_twins_are_bit_identical(monkeypatch, twins, make_trained):
    """Batched (route_frozen) and single-sample inference: the same logits and routes either way."""
    model = make_trained(extra_units=2).eval()
    x = random_images(70, 3)

    def run():
        with torch.no_grad():
            batched, routing = model(x, 0)
            single = torch.cat([model(x[i:i + 1], 0)[0] for i in range(5)])
        return batched, routing.embedding, routing.routes, single

    python, compiled = both(monkeypatch, twins, run)
    assert_same_bits(python, compiled, "inference")


@pytest.mark.parametrize("k,last", [(0, False), (1, False), (2, True)])
def test_frozen_step_twin(twins, k, last):
    """route_frozen's step after hashing: the same buffers and keys, bit for bit, with a zero
    hash row, blocked units, samples out of order and a residue below tau (a stop)."""
    from hrn_hw.reference.hrn import _frozen_step
    g = torch.Generator().manual_seed(k)
    B, M, m, s = 40, 5, 3, 300
    n = B if k == 0 else 23                       # (step 0 routes every sample, in order)
    flat_bases = torch.linalg.qr(torch.randn(s, M * m, generator=g))[0].T.contiguous()
    h0 = torch.randn(n, s, generator=g)
    h0[3] = 0
    h0[5] = flat_bases[4] * 2.0                   # lies in unit 1's span: residue ~0, below tau
    idx = torch.arange(B) if k == 0 else torch.randperm(B, generator=g)[:n]
    blocked0 = torch.rand(B, M, generator=g) < 0.3
    blocked0[:, 1] = False
    blocked0[blocked0.all(1), 0] = False          # every row keeps a candidate
    outs0 = (torch.randn(B, s, generator=g), torch.rand(B, generator=g),
             torch.randint(-1, M, (B, 3), generator=g), torch.rand(B, 3, generator=g))

    def run(step):
        h, blocked, outs = h0.clone(), blocked0.clone(), [t.clone() for t in outs0]
        key = step(h, flat_bases.T, flat_bases, torch.arange(M), blocked, idx, k,
                   *outs, torch.ones(()), 1e-4, M, m, last)
        return [h, blocked, *outs], key

    (py, py_key), (cc, cc_key) = run(_frozen_step), run(twins.frozen_step)
    assert_same_bits(py, cc, "frozen step")
    if last:
        assert py_key is None and cc_key is None
    else:
        assert torch.equal(py_key, cc_key) and int((cc_key == M).sum()) >= 1


@pytest.mark.parametrize("n", [1, 3, 16, 40])
def test_normalise_twin_zero_rows_included(monkeypatch, twins, n):
    g = torch.Generator().manual_seed(n)
    phi0 = torch.randn(n, 300, generator=g) * torch.rand(n, 1, generator=g) * 10
    phi0[n // 2] = 0
    grad = torch.randn(n, 300, generator=g)

    def run():
        phi = phi0.clone().requires_grad_()
        out = normalise(phi)
        out.backward(grad)
        return out.detach(), phi.grad, node_name(out)

    (*py, py_node), (*cc, cc_node) = both(monkeypatch, twins, run)
    assert (py_node, cc_node) == ("_NormaliseBackward", CPP_NODE.format("Normalise"))
    assert_same_bits(py, cc, "normalise")
    assert torch.isfinite(cc[1]).all()


@pytest.mark.parametrize("n", [1, 16, 33])
def test_residue_twin(monkeypatch, twins, n):
    g = torch.Generator().manual_seed(n)
    M, m, s = 4, 3, 300
    pool = BasisPool(M, m, s, 5, 1.2, 0.2, 0.01)
    pool.bases.copy_(torch.linalg.qr(torch.randn(s, M * m, generator=g))[0].T.reshape(M, m, s))
    h0, grad = torch.randn(n, s, generator=g), torch.randn(n, s, generator=g)
    mine = torch.randint(0, M, (n,), generator=g)[:, None] == torch.arange(M)

    def run():
        h = h0.clone().requires_grad_()
        r = pool._residue(h, pool._project_all(h.detach(), pool.bases), mine, pool.bases)
        r.backward(grad)
        return r.detach(), h.grad, node_name(r)

    (*py, py_node), (*cc, cc_node) = both(monkeypatch, twins, run)
    assert (py_node, cc_node) == ("_ProjectOutBackward", CPP_NODE.format("ProjectOut"))
    assert_same_bits(py, cc, "residue")


def _unit(train: bool, slope: float, bias: bool) -> ConvUnit:
    torch.manual_seed(3)
    act = {"type": "leaky_relu", "slope": slope} if slope else {"type": "relu"}
    unit = ConvUnit(2, [{"type": "conv", "out_channels": 6, "kernel": 5, "stride": 3, "padding": 2, "bias": bias},
                        {"type": "batchnorm"}, act]).train(train)
    randomise_bn(unit.layers[1])
    assert unit._fusable()
    return unit


@pytest.mark.parametrize("n", [1, 7, scaled_grad.SMALL_BATCH + 9])   # both kernels, BN on running stats at 1
@pytest.mark.parametrize("scale", ["none", "positive", "with_zero"])
@pytest.mark.parametrize("train,slope,bias,input_grad", [
    (True, 0.01, True, True), (True, 0.0, False, True), (False, 0.01, True, True), (True, 0.01, True, False)])
def test_unit_block_twin(monkeypatch, twins, n, scale, train, slope, bias, input_grad):
    """Output, input and parameter gradients (Eq. 7 scaled or not, a zero factor included) and
    the BN running statistics, in train and eval mode, for ReLU and leaky ReLU, with and
    without conv bias and input gradient."""
    g = torch.Generator().manual_seed(n)
    x0 = torch.rand(n, 4, 10, 10, generator=g)        # (folded to the unit's 2 channels)
    c = {"none": None, "positive": torch.rand(n, generator=g) + 0.05,
         "with_zero": torch.rand(n, generator=g).index_fill_(0, torch.tensor([0]), 0.0)}[scale]
    G = torch.randn(n, 6, 4, 4, generator=g)

    def run():
        unit = _unit(train, slope, bias)
        x = x0.clone().requires_grad_(input_grad)
        out = unit(x, c)
        params = list(unit.parameters())
        grads = torch.autograd.grad((out * G).sum(), ([x] if input_grad else []) + params)
        return (out.detach(), *grads, *unit.state_dict().values()), node_name(out)

    (py, py_node), (cc, cc_node) = both(monkeypatch, twins, run)
    assert (py_node, cc_node) == ("_UnitBlockBackward", CPP_NODE.format("UnitBlock"))
    assert_same_bits(py, cc, "unit block")


def _train_digest(steps: int, extra_units: int, grad_scaling: bool) -> tuple[str, list[float]]:
    cfg = pairwise_config(grad_scaling=grad_scaling)
    torch.manual_seed(0)
    model = HRN(cfg, seed=0)
    model.add_head(2)
    model.add_units(extra_units)
    train_model(model, steps, seed=1)
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode() + value.detach().contiguous().numpy().tobytes())
    model.eval()
    with torch.no_grad():
        logits = model(random_images(32, 7), 0)[0]
    return digest.hexdigest(), logits.flatten().tolist()


@pytest.mark.parametrize("extra_units,grad_scaling", [(0, True), (2, True), (2, False)])
def test_training_with_twins_is_bit_identical(monkeypatch, twins, extra_units, grad_scaling):
    """A training run (routing, Alg. 2-4, Eq. 7, Adam) ends in the same state, bit for bit, with
    either set of nodes."""
    py, cc = both(monkeypatch, twins, lambda: _train_digest(25, extra_units, grad_scaling))
    assert py == cc


def forget_loads() -> None:
    native.load.cache_clear()
    native.nodes.cache_clear()


@pytest.fixture
def fresh_loader(monkeypatch):
    """The loader's caches cleared before and after (environment and patches undone first)."""
    forget_loads()
    yield
    monkeypatch.undo()
    forget_loads()


def test_loader_refuses_other_builds_and_honours_the_switch(monkeypatch, twins, tmp_path, fresh_loader, capsys):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.nodes() is None and native.in_use() is None
    assert cli_main(["native", "--check"]) == 0              # built, but switched off: says so
    assert "HRN_NATIVE=0 is set" in capsys.readouterr().out
    forget_loads()
    monkeypatch.delenv(native.ENV_SWITCH)
    assert native.in_use() == native.module_name()
    # a changed source is another module: the present build is not loaded for it
    edited = tmp_path / "native_nodes.cpp"
    edited.write_bytes(native.SOURCE.read_bytes() + b"\n// edited\n")
    built = native.module_name()
    monkeypatch.setattr(native, "SOURCE", edited)
    forget_loads()
    assert native.module_name() != built
    assert not native.library_path().is_file() and native.nodes() is None


def test_broken_build_warns_and_the_python_nodes_run(monkeypatch, twins, tmp_path, fresh_loader, capsys):
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    native.library_path().parent.mkdir(parents=True)
    native.library_path().write_bytes(b"not a shared object")
    with pytest.warns(RuntimeWarning, match="do not load.*hrn-hw native"):
        assert native.nodes() is None
    y = torch.rand(2, 3, 4, requires_grad=True)
    assert normalise(feature_hash(y, 5, 50)).grad_fn.name() == "_NormaliseBackward"
    assert cli_main(["native", "--check"]) == 1
    assert "broken" in capsys.readouterr().out

    def failed_build(verbose=False):
        raise RuntimeError("Error building extension 'hrn_native'\nninja: build stopped")
    monkeypatch.setattr(native, "build", failed_build)
    assert cli_main(["native"]) == 2
    out, err = capsys.readouterr()
    assert "does not load" in out and "rebuilding" in out
    assert err.count("\n") == 1 and "failed: ninja: build stopped" in err


def test_cli_native_check_and_errors(monkeypatch, twins, tmp_path, capsys, fresh_loader):
    assert cli_main(["native", "--check"]) == 0
    assert cli_main(["native"]) == 0
    assert "up to date" in capsys.readouterr().out
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path / "none"))
    forget_loads()
    assert cli_main(["native", "--check"]) == 1
    assert "not built" in capsys.readouterr().out
    monkeypatch.setattr(native, "missing_tools", lambda: ["g++"])
    assert cli_main(["native"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "g++ not found" in err
    assert not (tmp_path / "none").exists()
