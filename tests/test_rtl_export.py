# amaranth: UnusedElaboratable=no
# (a top level built only for its interface, or whose Verilog comes from the cache, is never elaborated)
"""The RTL side of the export without simulation: knobs, the Verilog cache, the cycle model's
structure, and the CLI errors of export/verify around OUT/rtl."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrn_hw.errors import HrnError
from hrn_hw.rtl.knobs import RtlKnobs
from test_export_cli import QUICK, cli, error_line


@pytest.fixture(scope="module")
def model():
    """The RTL fixture model's checkpoint (trained and exported once under sim/build/_fixture/)."""
    from simlib import small_export

    return small_export().parent / "X.pt"


def test_preset_and_overrides(model, tmp_path, monkeypatch):
    """--preset ecp5-85f picks the part's knobs; a knob option given with it wins."""
    import hrn_hw.export.pipeline
    from hrn_hw.rtl.knobs import PRESETS, preset

    assert preset(None) == RtlKnobs() and preset("ecp5-85f") == PRESETS["ecp5-85f"]
    seen = []
    monkeypatch.setattr(hrn_hw.export.pipeline, "export", lambda *a, **k: seen.append(k["knobs"]) or 0 / 0)
    with pytest.raises(ZeroDivisionError):
        cli(["export", model, "-o", tmp_path / "x", "--preset", "ecp5-85f", "--head-lanes", "5"])
    assert seen == [PRESETS["ecp5-85f"].with_(head_lanes=5)] and seen[0].words == 1 and seen[0].head_lanes == 5
    code, _, err = cli(["export", model, "-o", tmp_path / "x", "--preset", "virtex-9"])
    assert code == 2 and "invalid choice" in err


def test_knobs_validate():
    assert RtlKnobs().to_dict() == {"words": 8, "conv_lanes": None, "pixel_lanes": 8, "head_lanes": 20,
                                    "root_bits": 4, "in_flight": 8, "replicas": "auto"}
    assert RtlKnobs.from_dict({"conv_lanes": 4}).conv_lanes == 4
    for bad in ({"conv_lanes": 0}, {"head_lanes": -1}, {"head_lanes": 2.5}, {"hash_lanes": 2}, {"lanes": 3},
                {"conv_lanes": True}, {"words": 6}, {"words": 0}, {"pixel_lanes": 0}, {"root_bits": 1.5}):
        with pytest.raises(HrnError):
            RtlKnobs.from_dict(bad)


def test_conv_lanes_capped_per_unit():
    from simlib import small_export

    from hrn_hw.export.ir import QuantModel

    qm = QuantModel.load(small_export())
    unit = qm.units[0]
    assert RtlKnobs().lanes_of(unit) == unit.layers[0].out_channels
    assert RtlKnobs(conv_lanes=4).lanes_of(unit) == 4
    assert RtlKnobs(conv_lanes=999).lanes_of(unit) == unit.layers[0].out_channels


def test_cycle_model_structure():
    """Per phase: one route step per selected unit (one when none is), a residue per selected
    unit, a conv call per selected unit but the last; more conv lanes never cost cycles."""
    from simlib import small_export

    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl.latency import sample_cycles, sample_phases

    qm = QuantModel.load(small_export())
    one, three, none = (sample_phases(qm, r) for r in ([1, -1, -1], [1, 2, 0], [-1, -1, -1]))
    assert three["route"] == 3 * one["route"] and none["route"] == one["route"]
    assert three["residue"] == 3 * one["residue"] and none["residue"] == 0
    assert one["conv"] == 0 and none["conv"] == 0 and three["conv"] > 0
    assert one["head"] == three["head"] == none["head"]
    routes = np.array([[1, 2, 0], [1, -1, -1]])
    assert (sample_cycles(qm, routes, {"conv_lanes": 4}) > sample_cycles(qm, routes)).tolist() == [True, False]
    with pytest.raises(ValueError):
        sample_cycles(qm, routes, None, tasks=[0])


def test_verilog_cache(tmp_path, monkeypatch):
    """The top level's Verilog is generated once per design and taken from the cache after."""
    from simlib import small_export

    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl import emit
    from hrn_hw.rtl.top import HrnTop

    monkeypatch.setenv(emit.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(emit, "to_verilog", lambda top, name: calls.append(name) or f"// {name} {len(calls)}\n")
    qm = QuantModel.load(small_export())
    first = emit.top_verilog(HrnTop(qm))
    assert emit.top_verilog(HrnTop(qm)) == first and len(calls) == 1
    emit.top_verilog(HrnTop(qm, RtlKnobs(head_lanes=5)))
    assert len(calls) == 2
    summary = emit.write_rtl(qm, tmp_path / "rtl", RtlKnobs(conv_lanes=8, in_flight=1))
    assert (tmp_path / "rtl" / "hrn_top.v").read_text().startswith("// hrn_top")
    assert json.loads((tmp_path / "rtl" / "rtl.json").read_text())["knobs"]["conv_lanes"] == 8
    assert emit.read_knobs(tmp_path / "rtl") == RtlKnobs(conv_lanes=8, in_flight=1, replicas={}) and summary["conv_lanes"]["0"] == 8


def test_export_rejects_bad_rtl_options(model, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(["export", model, "-o", out, "--synth", *QUICK])
    assert code == 2 and "--synth needs the RTL" in error_line(err) and not out.exists()
    code, _, err = cli(["export", model, "-o", out, "--conv-lanes", "0", *QUICK])
    assert code == 2 and not out.exists()


def test_verify_rtl_without_rtl_is_one_line(model, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(["export", model, "-o", out, *QUICK])
    assert code == 0, err
    code, _, err = cli(["verify", out, "--against", "rtl"])
    assert code == 2 and "no RTL (rtl/hrn_top.v missing); export again" in error_line(err)
