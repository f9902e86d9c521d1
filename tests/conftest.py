"""Shared helpers for the reference-model tests: configs, synthetic images, short training runs."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]

# The RTL block testbenches live in sim/ (one module per DUT, cocotb-examples style); the
# tests/test_rtl_*.py wrappers import them from there.
if str(ROOT / "sim") not in sys.path:
    sys.path.insert(0, str(ROOT / "sim"))
PAIRWISE_CFG = ROOT / "hrn_hw" / "configs" / "pairwise-mnist.yaml"

# The tiny convolutions of the reference run far faster single-threaded than with the
# default intra-op pool on a small, shared machine (several x), and the results are the same.
torch.set_num_threads(1)



def run_cli(argv) -> tuple[int, str, str]:
    """Run `hrn-hw` in-process on argv (any items, made strings); (exit code, stdout, stderr)."""
    from hrn_hw.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()

def evaluate_comb(shape, build, values, out_width: int = 96) -> list:
    """Run a combinational Amaranth expression build(x) on the simulator for each value of x
    (a Signal of `shape`); the results, read as a signed `out_width`-bit value."""
    from amaranth import Module, Signal, signed
    from amaranth.sim import Simulator

    m = Module()
    x = Signal(shape)
    y = Signal(signed(out_width))
    m.d.comb += y.eq(build(x))
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(x, v)
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


def interrupt_after_first_epoch(monkeypatch):
    """hrn_hw.train's second epoch raises KeyboardInterrupt (a run stopped after one epoch:
    its checkpoint holds the training state to resume from); returns the real train_epoch."""
    import hrn_hw.train as train_mod

    real, calls = train_mod.train_epoch, []

    def flaky(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_epoch", flaky)
    return real


def pairwise_config(no_bn: bool = False, profile: str = "paper", **hrn_overrides):
    """The bundled pairwise-MNIST config in `profile` (the paper's by default), with HRN
    hyperparameters optionally replaced and, with no_bn, its units' batchnorm layers removed
    (samples then pass through units independently)."""
    from hrn_hw.config import config_from_dict, config_to_dict, load_config

    cfg = load_config(PAIRWISE_CFG, profile)
    if no_bn:
        data = config_to_dict(cfg)
        for group in data["units"]:
            group["layers"] = [layer for layer in group["layers"] if layer["type"] != "batchnorm"]
        cfg = config_from_dict(data, "pairwise-mnist without batchnorm")
    if hrn_overrides:
        cfg = dataclasses.replace(cfg, hrn=dataclasses.replace(cfg.hrn, **hrn_overrides))
    return cfg


def random_images(n: int, seed: int) -> torch.Tensor:
    """Random uint8 images [n, 1, 28, 28]: mostly sparse random patches (diverse hashes, so the
    pool's units get initialised by different samples), every fourth one dense uniform noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    for i in range(n):
        if i % 4 == 3:
            x[i] = torch.randint(0, 256, (1, 28, 28), generator=g, dtype=torch.uint8)
            continue
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            r0, c0 = torch.randint(0, 22, (2,), generator=g).tolist()
            h, w = torch.randint(3, 10, (2,), generator=g).tolist()
            h, w = min(h, 28 - r0), min(w, 28 - c0)
            x[i, 0, r0:r0 + h, c0:c0 + w] = torch.randint(1, 256, (h, w), generator=g, dtype=torch.uint8)
    return x


def randomise_bn(bn) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (uniform draws from torch's RNG)."""
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)


def train_model(model, steps: int, batch: int = 16, seed: int = 0, lr: float = 1e-3):
    """A few Adam steps on random images and labels with the Eq. 6 loss (task 0 head)."""
    torch.manual_seed(seed)
    x = random_images(steps * batch, seed + 1000)
    y = torch.randint(0, 2, (steps * batch,), generator=torch.Generator().manual_seed(seed + 2000))
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    lam = model.cfg.hrn.residue_l1
    for i in range(steps):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        logits, routing = model(xb, 0)
        loss = F.cross_entropy(logits, yb) + lam * routing.residue_l1.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@functools.lru_cache(maxsize=None)
def _trained(seed: int, extra_units: int, steps: int, no_bn: bool, overrides: tuple):
    from hrn_hw.reference.hrn import HRN

    cfg = pairwise_config(no_bn, **dict(overrides))
    torch.manual_seed(seed)                # unit weights: independent of the tests run before
    model = HRN(cfg, seed=seed)
    model.add_head(2)
    if extra_units:
        model.add_units(extra_units)
    return train_model(model, steps, seed=seed)


def trained_model(seed: int = 0, extra_units: int = 0, steps: int = 12, no_bn: bool = False, **hrn_overrides):
    """A fresh deep copy of a (cached) briefly trained HRN with one 2-class head."""
    return copy.deepcopy(_trained(seed, extra_units, steps, no_bn, tuple(sorted(hrn_overrides.items()))))


@pytest.fixture
def make_trained():
    return trained_model


# `make test` runs the test files on parallel workers (pytest-xdist, --dist loadfile
# --no-loadscope-reorder), which take files in collection order: the long RTL and export files
# go first, so that none starts last and leaves one worker running alone at the end (xdist's
# own order, by number of tests, put these few-test files last). Order within a file is kept.
SLOW_FILES_FIRST = ("test_rtl_residue_head.py", "test_rtl_top.py", "test_export_cli.py", "test_rtl_conv_engine.py",
                    "test_rtl_blocks.py", "test_export_parity.py", "test_install.py", "test_fixed_primitives.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES_FIRST)))
