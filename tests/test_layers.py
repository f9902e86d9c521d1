"""The layer-kind registry (hrn_hw.layers): one definition per kind, every dispatch site asks
it, and a kind it does not know is an error everywhere (no silent fallback to another kind)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from hrn_hw import layers
from hrn_hw.errors import ConfigError
from hrn_hw.export.ir import ActQ, ConvQ, ExportError, PoolQ, UnitQ
from hrn_hw.fixedpoint.fmt import Fmt, SatCounter

BUILTIN = ("conv", "batchnorm", "leaky_relu", "relu", "maxpool", "dropout")


@dataclass
class MysteryQ:
    """An IR layer of a kind nobody registered."""
    kernel: int = 2
    stride: int = 2
    kind: str = "mystery"


def _unit(*rest) -> UnitQ:
    conv = ConvQ(2, 3, 1, 1, np.ones((2, 1, 3, 3), np.int64), Fmt(8, 6), np.zeros(2, np.int64), Fmt(8, 6), Fmt(12, 6))
    return UnitQ(0, 1, [conv, *rest], True)


def test_registry_holds_the_builtin_kinds_in_order():
    assert layers.kinds()[:len(BUILTIN)] == BUILTIN
    for name in layers.kinds():
        kind = layers.get(name)
        assert kind.name == name and isinstance(kind.params, dict)


def test_unit_layer_table_is_the_registry():
    from hrn_hw.reference.units import LAYER_PARAMS, LAYER_TYPES

    assert LAYER_TYPES == layers.kinds()
    assert LAYER_PARAMS == {k: layers.get(k).params for k in layers.kinds()}


def test_config_unit_order_comes_from_the_kinds():
    from hrn_hw.config import UNIT_ANYWHERE, UNIT_SHAPE, UNIT_STAGES

    assert UNIT_STAGES[:3] == (("conv",), ("batchnorm",), ("leaky_relu", "relu"))
    assert "maxpool" in UNIT_STAGES[3] and UNIT_ANYWHERE == ("dropout",)
    assert UNIT_SHAPE.startswith("conv, then optionally batchnorm, leaky_relu or relu, maxpool")


def test_unknown_kind_is_an_error_everywhere():
    from hrn_hw.dataflow.manycore import unit_weight_bytes, unit_work
    from hrn_hw.export.shapes import unit_out_shape
    from hrn_hw.golden import run_unit
    from hrn_hw.rtl.conv_engine import unit_layers
    from hrn_hw.reference.units import build_layer

    with pytest.raises(layers.LayerKindError, match="unknown unit layer type 'mystery'; supported: conv"):
        layers.get("mystery")
    with pytest.raises(layers.LayerKindError, match="not a unit layer"):
        layers.of(object())
    with pytest.raises(ConfigError, match="unsupported unit layer type 'mystery'"):
        build_layer({"type": "mystery"}, 1)
    unit = _unit(MysteryQ())
    qm = type("QM", (), {"units": [unit]})()
    for call in (lambda: unit_out_shape(unit, (1, 6, 6)),
                 lambda: unit.out_fmt,
                 lambda: run_unit(qm, 0, np.zeros((1, 1, 6, 6), np.int64), 0, SatCounter()),
                 lambda: unit_layers(unit),
                 lambda: unit_work(qm, 0, (1, 6, 6)),
                 lambda: unit_weight_bytes(qm, 0)):
        with pytest.raises(layers.LayerKindError, match="mystery"):
            call()


def test_unknown_kind_in_a_manifest(tmp_path):
    from hrn_hw.export.ir import QuantModel

    man = {"units": [{"index": 0, "in_channels": 1, "initialised": True,
                      "layers": [{"type": "mystery", "kernel": 2, "stride": 2}]}]}
    with pytest.raises(ExportError, match="manifest: unknown unit layer type 'mystery'"):
        QuantModel._from_manifest(man, {})
    man["units"][0]["layers"] = [{"type": "batchnorm"}]      # a kind without an IR layer
    with pytest.raises(ExportError, match="manifest: unknown unit layer type 'batchnorm'"):
        QuantModel._from_manifest(man, {})


def test_a_concern_a_kind_has_no_part_in_names_both():
    with pytest.raises(layers.LayerKindError, match="'batchnorm' has no golden operation"):
        layers.get("batchnorm").golden(None, None, 0, None, None, "x")
    with pytest.raises(layers.LayerKindError, match="'dropout' has no IR layer"):
        layers.get("dropout").to_manifest(None)


def test_ir_layers_round_trip_through_their_kinds():
    for layer in (ActQ(655, 16), PoolQ(3, 2)) + tuple(_unit().layers):
        kind = layers.of(layer)
        arrays = {f"k.{s}": a for s, (a, _) in kind.arrays(layer).items()}
        back = kind.from_manifest(kind.to_manifest(layer), arrays, "k")
        assert type(back) is type(layer) and kind.to_manifest(back) == kind.to_manifest(layer)


def test_conv_engine_stages_come_from_the_kinds():
    from hrn_hw.rtl.conv_engine import unit_layers

    act, pool = ActQ(655, 16), PoolQ(2, 2)
    for unit in (_unit(act, pool), _unit(pool, act)):              # max pooling commutes with LeakyReLU
        got = unit_layers(unit)
        assert got[0] is unit.layers[0] and got[1:] == (act, pool)
    assert unit_layers(_unit())[1:] == (None, None)
    with pytest.raises(NotImplementedError, match="at most one activation and one pooling"):
        unit_layers(_unit(pool, PoolQ(2, 2)))


def test_the_vanilla_cnn_builds_every_kind_from_the_registry():
    """The VC baseline chains each kind's plain torch module (hrn_hw.layers), avgpool included."""
    import torch

    from hrn_hw.cl.vc import _layer

    specs = [{"type": "conv", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "bias": False},
             {"type": "batchnorm", "momentum": 0.2}, {"type": "leaky_relu", "slope": 0.1}, {"type": "relu"},
             {"type": "maxpool", "kernel": 3}, {"type": "avgpool", "kernel": 2}, {"type": "dropout", "p": 0.3}]
    expect = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.LeakyReLU, torch.nn.ReLU, torch.nn.MaxPool2d,
              torch.nn.AvgPool2d, torch.nn.Dropout)
    ch = 3
    for spec, cls in zip(specs, expect):
        mod, ch = _layer(dict(spec), ch)
        assert isinstance(mod, cls) and ch == 4
    with pytest.raises(ConfigError, match="unsupported unit layer type 'pool'"):
        _layer({"type": "pool"}, 3)


def test_ir_rtl_and_hls_import_no_torch():
    """The registry's kinds import torch only inside their reference and export concerns."""
    code = ("import sys, hrn_hw.export.ir, hrn_hw.rtl.top, hrn_hw.hls.render, hrn_hw.layers; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
