"""Average pooling (`avgpool`), the layer kind added through the registry (hrn_hw/layers/avgpool.py):
the golden rounding against float, the HLS C++ and the RTL divider against the golden model, and
a small trained model with avgpool units exported, golden == C-sim bit for bit. (The RTL conv
engine with avgpool on Verilator: tests/test_rtl_conv_engine.py.)"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import evaluate_comb
from hrn_hw import layers
from hrn_hw.errors import ConfigError
from hrn_hw.layers.avgpool import avgpool, div_magic

CASES = [  # kernel, stride, map (C, H, W)
    (1, 1, (2, 3, 4)), (2, 2, (3, 8, 8)), (2, 1, (1, 5, 7)), (3, 3, (2, 9, 7)), (3, 1, (2, 6, 6)),
    (3, 2, (1, 2, 2)), (4, 4, (2, 9, 10)), (5, 2, (1, 3, 11)), (2, 2, (1, 1, 1))]


def _float_avg(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """torch's avg_pool2d of the map, zero-padded bottom/right up to the kernel (the reference)."""
    t = torch.from_numpy(x.astype(np.float64))
    h, w = t.shape[-2:]
    t = F.pad(t, (0, max(0, k - w), 0, max(0, k - h)))
    return F.avg_pool2d(t, k, s).numpy()


@pytest.mark.parametrize("k, s, shape", CASES)
def test_golden_is_the_float_mean_rounded_half_up(k, s, shape):
    rng = np.random.default_rng(k * 100 + s)
    for lo, hi in ((-2048, 2047), (0, 255), (-3, 3)):
        x = rng.integers(lo, hi + 1, (5, *shape))
        q = avgpool(x, k, s)
        ref = _float_avg(x, k, s)                  # integers' mean: the LSB is 1
        assert q.shape == ref.shape and q.dtype == np.int64
        err = q - ref
        assert (err > -0.5).all() and (err <= 0.5).all()      # round half up: within 1/2 LSB
        assert q.min() >= min(x.min(), 0) and q.max() <= max(x.max(), 0)   # never leaves the format


def test_golden_ties_go_up():
    x = np.array([[[[1, 1], [0, 0]], [[-1, -1], [0, 0]], [[-2, 0], [0, 0]], [[3, 3], [3, 2]]]])   # sums 2, -2, -2, 11
    assert avgpool(x, 2, 2).reshape(-1).tolist() == [1, 0, 0, 3]       # 0.5 -> 1, -0.5 -> 0, -0.5 -> 0, 2.75 -> 3


def test_config_and_reference_module():
    from hrn_hw.reference.units import build_layer

    assert layers.validate_spec({"type": "avgpool"}) == {"type": "avgpool", "kernel": 2, "stride": 2}
    assert layers.validate_spec({"type": "avgpool", "kernel": 3}) == {"type": "avgpool", "kernel": 3, "stride": 3}
    with pytest.raises(ConfigError, match="avgpool layer does not take padding"):
        layers.validate_spec({"type": "avgpool", "padding": 1})
    with pytest.raises(ConfigError, match="avgpool kernel must be a positive integer"):
        layers.validate_spec({"type": "avgpool", "kernel": 0})
    mod, ch = build_layer({"type": "avgpool", "kernel": 3, "stride": 2}, 4)
    assert ch == 4 and type(mod).layer_kind == "avgpool"
    x = torch.randn(2, 4, 7, 2)
    assert torch.equal(mod(x), F.avg_pool2d(F.pad(x, (0, 1, 0, 0)), 3, 2))


def test_shape_ops_and_cycles_of_an_avgpool_unit():
    """The same output shape and conv-engine cycles as maxpool (kp^2 reads per word); one more
    op per output element in the many-core count (the division)."""
    import test_conv_engine

    from hrn_hw.export.ir import PoolQ, UnitQ
    from hrn_hw.export.shapes import unit_out_shape
    from hrn_hw.rtl.conv_engine import conv_engine_cycles

    qm, unit, calls = test_conv_engine.synthetic_avgpool_unit()
    conv, act, pool = unit.layers
    as_max = UnitQ(0, 2, [conv, act, PoolQ(pool.kernel, pool.stride)], True)
    for c in calls:
        shape = tuple(c["in_shape"])
        assert unit_out_shape(unit, shape) == unit_out_shape(as_max, shape)
        for words, pixels in ((1, 1), (2, 3), (8, 5)):
            assert conv_engine_cycles(unit, c, 2, words, pixels) == conv_engine_cycles(as_max, c, 2, words, pixels)
    kind = layers.get("avgpool")
    assert kind.work(pool, 5, 7, 6) == (0, 5 * 5 * 4 * 10)
    assert kind.to_manifest(pool) == {"type": "avgpool", "kernel": 3, "stride": 1}
    assert kind.from_manifest(kind.to_manifest(pool), {}, "k") == pool


def test_conv_engine_runs_avgpool_after_the_activation_only():
    """The engine activates, then pools: a mean does not commute with LeakyReLU (config
    validation refuses that order too)."""
    from hrn_hw.export.ir import ActQ, ConvQ, PoolQ, UnitQ
    from hrn_hw.fixedpoint.fmt import Fmt
    from hrn_hw.rtl.conv_engine import unit_layers

    conv = ConvQ(2, 3, 1, 1, np.ones((2, 1, 3, 3), np.int64), Fmt(8, 6), None, None, Fmt(12, 6))
    act, pool = ActQ(655, 16), PoolQ(2, 2, "avgpool")
    assert unit_layers(UnitQ(0, 1, [conv, act, pool], True))[1:] == (act, pool)
    with pytest.raises(NotImplementedError, match="avgpool before the activation"):
        unit_layers(UnitQ(0, 1, [conv, pool, act], True))
    from hrn_hw.config import config_from_dict
    layers_ = [{"type": "conv", "out_channels": 2, "kernel": 3}, {"type": "avgpool"}, {"type": "relu"}]
    with pytest.raises(ConfigError, match="a unit's layers must be conv, then"):
        config_from_dict({"name": "n", "scenario": "pairwise-mnist",
                          "units": [{"count": 1, "in_channels": 1, "layers": layers_}]})


def _rtl_finish_outputs(width: int, kernel: int, sums: list) -> list:
    """The conv engine's avgpool finish (AvgPool.rtl_finish) on the Amaranth simulator."""
    kind = layers.get("avgpool")
    return evaluate_comb(kind.rtl_acc_shape(width, kernel), lambda acc: kind.rtl_finish(acc, kernel, width),
                         sums, out_width=width)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_rtl_divider_is_the_golden_rounding_on_every_sum(kernel):
    """Every sum kernel^2 words of 5 bits can make (exhaustive), and random sums of 14-bit words."""
    d = kernel * kernel
    for width, sums in ((5, list(range(-16 * d, 15 * d + 1))),):
        want = [(s + d // 2) // d for s in sums]
        assert _rtl_finish_outputs(width, kernel, sums) == want
    rng = np.random.default_rng(kernel)
    sums = [int(v) for v in rng.integers(-8192 * d, 8191 * d + 1, 300)] + [-8192 * d, 8191 * d]
    assert _rtl_finish_outputs(14, kernel, sums) == [(s + d // 2) // d for s in sums]


@pytest.mark.parametrize("d, bits", [(9, 12), (9, 28), (25, 29), (49, 30), (3, 40), (81, 31)])
def test_div_magic_is_exact_over_its_range(d, bits):
    m, shift = div_magic(d, bits)
    rng = np.random.default_rng(d)
    ns = [0, 1, d - 1, d, (1 << bits) - 1, (1 << bits) - 2] + [int(v) for v in rng.integers(0, 1 << bits, 2000)]
    ns += [q * d + r for q in ((1 << bits) // d - 1, (1 << bits) // d) for r in (0, d - 1) if q * d + r < 1 << bits]
    assert all((n * m) >> shift == n // d for n in ns)
    if bits <= 12:
        assert all((n * m) >> shift == n // d for n in range(1 << bits))


HARNESS = r"""
#include <cstdio>
#include "hrn_unit.h"
typedef ap_fixed<12, 9, AP_TRN, AP_SAT> s12_t;     // frac 3
typedef ap_ufixed<8, 0> u8_t;                       // frac 8 (the input pixels)
template <int K, int S, int C, int H, int W, int HO, int WO, class T, class ACC, int F> void run() {
    T x[C * H * W], y[C * HO * WO];
    for (int i = 0; i < C * H * W; i++) { long long r; if (scanf("%lld", &r) != 1) return; x[i] = hrn::from_raw<T>(r); }
    hrn::avgpool<C, H, W, K, S, HO, WO, T, ACC>(x, y);
    for (int i = 0; i < C * HO * WO; i++) printf("%.0f\n", y[i].to_double() * (1 << F));   // exact: <= 12 bits
}
int main() {
    run<3, 1, 2, 6, 5, 4, 3, s12_t, ap_fixed<18, 15>, 3>();
    run<2, 2, 1, 5, 7, 2, 3, s12_t, ap_fixed<18, 15>, 3>();
    run<3, 2, 1, 2, 2, 1, 1, s12_t, ap_fixed<18, 15>, 3>();
    run<2, 2, 1, 6, 6, 3, 3, u8_t, ap_fixed<12, 4>, 8>();
    return 0;
}
"""


def test_hls_avgpool_equals_golden(tmp_path):
    """hrn::avgpool (hls/templates/hrn_unit.h) compiled with g++ on signed 12-bit maps (kernels
    3 and 2, a map smaller than the kernel) and unsigned pixels: the golden integers."""
    from hrn_hw.hls.render import TEMPLATES, hls4ml_dir
    from hrn_hw.hls.csim import require_tool

    cxx = require_tool("g++", "CXX")
    (tmp_path / "h.cpp").write_text(HARNESS)
    exe = tmp_path / "h"
    subprocess.run([cxx, "-O1", "-std=c++14", f"-I{TEMPLATES}", f"-I{hls4ml_dir() / 'ap_types'}", "-o", str(exe),
                    str(tmp_path / "h.cpp")], check=True, capture_output=True)
    rng = np.random.default_rng(5)
    cases = [(3, 1, (2, 6, 5), -2048, 2047), (2, 2, (1, 5, 7), -2048, 2047), (3, 2, (1, 2, 2), -2048, 2047),
             (2, 2, (1, 6, 6), 0, 255)]
    xs = [rng.integers(lo, hi + 1, shape) for _, _, shape, lo, hi in cases]
    xs[0][0, :3, :3] = -1                        # a negative exact multiple and ties
    xs[1][0, :2, :2] = [[-1, -1], [0, 0]]
    text = "\n".join(str(int(v)) for x in xs for v in x.reshape(-1))
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout.split()
    want = [int(v) for (k, s, _, _, _), x in zip(cases, xs) for v in avgpool(x[None], k, s).reshape(-1)]
    assert [int(v) for v in out] == want


AVG_UNITS = [
    {"count": 2, "in_channels": 1, "layers": [
        {"type": "conv", "out_channels": 8, "kernel": 5, "stride": 3, "padding": 2}, {"type": "batchnorm"},
        {"type": "leaky_relu", "slope": 0.01}, {"type": "avgpool"}]},                 # 28 -> 10 -> 5
    {"count": 2, "in_channels": 1, "layers": [
        {"type": "conv", "out_channels": 8, "kernel": 2, "stride": 3}, {"type": "batchnorm"},
        {"type": "leaky_relu", "slope": 0.01}, {"type": "avgpool", "kernel": 3, "stride": 1}]},   # 28 -> 9 -> 7
]


@pytest.fixture(scope="module")
def avgpool_export(tmp_path_factory):
    """A small Pairwise-MNIST HRN whose units end in avgpool (kernels 2 and 3), trained briefly
    and exported without RTL."""
    import yaml

    from hrn_hw.cli import main
    from hrn_hw.config import config_to_dict, load_config

    root = tmp_path_factory.mktemp("avgpool")
    data = config_to_dict(load_config(_pairwise_cfg(), "paper"))
    data["units"] = AVG_UNITS
    data["extra_units"] = [0]
    cfg = root / "avgpool.yaml"
    cfg.write_text(yaml.safe_dump(data))
    model = root / "model.pt"
    assert main(["train", "--scenario", "pairwise-mnist", "--config", str(cfg), "--limit", "96", "--epochs", "1",
                 "--out", str(model)]) == 0
    out = root / "export"
    assert main(["export", str(model), "-o", str(out), "--golden", "24", "--eval-limit", "60", "--calib", "48",
                 "--no-rtl"]) == 0
    return out


def _pairwise_cfg():
    from pathlib import Path

    import hrn_hw
    return Path(hrn_hw.__file__).parent / "configs" / "pairwise-mnist.yaml"


def test_avgpool_model_golden_equals_csim(avgpool_export, capsys):
    from hrn_hw.cli import main
    from hrn_hw.export.ir import QuantModel

    qm = QuantModel.load(avgpool_export)
    pools = [l for u in qm.units for l in u.layers if l.kind == "avgpool"]
    assert {(p.kernel, p.stride) for p in pools} == {(2, 2), (3, 1)}
    capsys.readouterr()
    assert main(["verify", str(avgpool_export), "--against", "csim"]) == 0
    result = json.loads((avgpool_export / "verify_csim.json").read_text())
    assert result["compared"] > 0 and result["mismatches"] == 0
    assert result["per_output"] == {"embedding": 0, "routes": 0, "logits": 0}
    summary = json.loads((avgpool_export / "export.json").read_text())
    assert min(t["route_agreement"] for t in summary["tasks"]) >= 0.9
