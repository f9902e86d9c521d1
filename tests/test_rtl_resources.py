"""Resource counts by Yosys synth_xilinx (hrn_hw/rtl/resources.py): a hand-written design whose
mapping is known exactly, a small generated hash unit, and the error paths."""

from __future__ import annotations

import os
import shutil

import pytest

from hrn_hw.errors import HrnError
from hrn_hw.rtl.resources import YOSYS_ENV, YosysError, count_cells, resources_table, synth_resources

HAVE_YOSYS = shutil.which(os.environ.get(YOSYS_ENV) or "yosys") is not None
needs_yosys = pytest.mark.skipif(not HAVE_YOSYS, reason="yosys not installed: `make setup` installs it "
                                 "(apt-get install yosys, as root)")

# A registered 16 x 16 multiply (one DSP48E1 with its P register), a 1024 x 18 synchronous ROM
# (one RAMB18E1), a 2048 x 36 simple dual-port RAM (two RAMB36E1) and a 64 x 8 ROM (LUTs by
# Yosys's cost model; one RAMB18E1 with rom_style "block"), in four modules under a top that
# instantiates them, in two files.
KNOWN_TOP = """
module known(input clk, input signed [15:0] a, input signed [15:0] b, output signed [31:0] p,
             input [9:0] raddr, output [17:0] q,
             input we, input [10:0] waddr, input [10:0] r2, input [35:0] d, output [35:0] q2,
             input [5:0] a3, output [7:0] q3);
  mul16 u_mul(.clk(clk), .a(a), .b(b), .p(p));
  rom1k u_rom(.clk(clk), .addr(raddr), .q(q));
  ram2k u_ram(.clk(clk), .we(we), .waddr(waddr), .raddr(r2), .d(d), .q(q2));
  rom64 u_rom64(.clk(clk), .addr(a3), .q(q3));
endmodule
"""
KNOWN_LEAVES = """
module mul16(input clk, input signed [15:0] a, input signed [15:0] b, output reg signed [31:0] p);
  always @(posedge clk) p <= a * b;
endmodule
module rom1k(input clk, input [9:0] addr, output reg [17:0] q);
  reg [17:0] mem [0:1023];
  integer i;
  initial for (i = 0; i < 1024; i = i + 1) mem[i] = (i * 2654435761) & 18'h3ffff;
  always @(posedge clk) q <= mem[addr];
endmodule
module ram2k(input clk, input we, input [10:0] waddr, input [10:0] raddr, input [35:0] d,
             output reg [35:0] q);
  reg [35:0] mem [0:2047];
  always @(posedge clk) begin if (we) mem[waddr] <= d; q <= mem[raddr]; end
endmodule
module rom64(input clk, input [5:0] addr, output reg [7:0] q);
  reg [7:0] mem [0:63];
  integer i;
  initial for (i = 0; i < 64; i = i + 1) mem[i] = (i * 97 + 13) & 8'hff;
  always @(posedge clk) q <= mem[addr];
endmodule
"""


@pytest.fixture(scope="module")
def hash_unit_v(tmp_path_factory):
    from hrn_hw.rtl import HashUnit, write_verilog

    path = tmp_path_factory.mktemp("rtl_res") / "hash_unit.v"
    return write_verilog(HashUnit(s=16, in_width=8, in_signed=False, max_n=64), "hash_unit", path)


@needs_yosys
def test_known_design_maps_exactly(tmp_path):
    (tmp_path / "top.v").write_text(KNOWN_TOP)
    (tmp_path / "leaves.v").write_text(KNOWN_LEAVES)
    res = synth_resources([tmp_path / "top.v", tmp_path / "leaves.v"], "known", rom_style="block")
    assert res["cells"] == {"DSP48E1": 1, "RAMB18E1": 2, "RAMB36E1": 2}, res["cells"]
    assert (res["DSP"], res["RAMB36"], res["RAMB18"], res["BRAM"]) == (1, 2, 2, 3.0)
    assert res["LUT"] == res["FF"] == res["LUTRAM"] == res["CARRY4"] == 0
    assert res["yosys"].startswith("Yosys ") and res["family"] == "xc7" and res["top"] == "known"
    assert res["rom_style"] == "block"
    assert res["seconds"] > 0


@needs_yosys
def test_hash_unit_counts_are_plausible(hash_unit_v):
    res = synth_resources(hash_unit_v, "hash_unit")
    # fmix32's and the bucket's 32-bit constant multiplies go to DSP48E1s; a 16-word phi memory
    # is distributed RAM, not a block RAM; the 7-stage pipeline has well over 100 flip-flops.
    assert res["DSP"] > 0 and res["cells"]["DSP48E1"] == res["DSP"]
    assert res["FF"] > 100 and res["LUT"] > 0 and res["CARRY4"] > 0
    assert res["LUTRAM"] > 0 and res["BRAM"] == 0
    assert res["LUT"] == sum(n for c, n in res["cells"].items() if c.startswith("LUT"))


@needs_yosys
@pytest.mark.parametrize("case", ["syntax", "no_top"])
def test_failing_verilog_reports_the_log(tmp_path, case):
    v = tmp_path / "bad.v"
    if case == "syntax":
        v.write_text("module bad(input clk, output reg q);\n  always @(posedge clk) q <= ;\nendmodule\n")
    else:
        v.write_text("module other(input a, output b);\n  assign b = a;\nendmodule\n")
    with pytest.raises(YosysError, match="failed") as exc:
        synth_resources(v, "bad")
    msg = str(exc.value)
    assert "bad" in msg and "ERROR" in msg          # the log's last lines carry Yosys's error
    assert isinstance(exc.value, HrnError)


@needs_yosys
def test_timeout(hash_unit_v):
    with pytest.raises(YosysError, match="ran past its 0.2 s limit"):
        synth_resources(hash_unit_v, "hash_unit", timeout=0.2)


def test_missing_yosys(monkeypatch, tmp_path):
    monkeypatch.setenv(YOSYS_ENV, "/nonexistent/yosys")
    v = tmp_path / "a.v"
    v.write_text("module a(input x, output y); assign y = x; endmodule\n")
    with pytest.raises(YosysError, match="/nonexistent/yosys not found.*apt-get install yosys") as exc:
        synth_resources(v, "a")
    assert isinstance(exc.value, HrnError)


def test_bad_arguments(tmp_path):
    with pytest.raises(YosysError, match="not found"):
        synth_resources(tmp_path / "nope.v", "nope")
    v = tmp_path / "a.v"
    v.write_text("module a(input x, output y); assign y = x; endmodule\n")
    with pytest.raises(ValueError, match="rom_style"):
        synth_resources(v, "a", rom_style="distributed")
    with pytest.raises(ValueError, match="top module"):
        synth_resources(v, "a; shell")


def test_count_cells_and_table():
    cells = {"LUT1": 1, "LUT6": 4, "FDRE": 3, "FDCE": 2, "DSP48E1": 2, "RAMB36E1": 1, "RAMB18E1": 3,
             "RAM32M": 2, "RAM128X1D": 1, "SRLC32E": 1, "CARRY4": 5, "MUXF7": 2, "INV": 1}
    res = count_cells(cells)
    assert (res["LUT"], res["FF"], res["DSP"], res["LUTRAM"], res["SRL"], res["CARRY4"], res["MUXF"]) == \
        (5, 5, 2, 3, 1, 5, 2)
    assert (res["RAMB36"], res["RAMB18"], res["BRAM"]) == (1, 3, 2.5)
    table = resources_table({"hash unit": res, "empty": count_cells({})})
    lines = table.splitlines()
    assert lines[0].startswith("| block | LUT | FF | DSP48 | BRAM (36 Kb) |")
    assert lines[2] == "| hash unit | 5 | 5 | 2 | 2.5 | 1 | 3 | 3 | 1 | 5 | 2 |"
    assert lines[3] == "| empty | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |"
    assert len({line.count("|") for line in lines}) == 1


def test_memory_images_rewrite_inits(tmp_path):
    """Amaranth's per-word memory initialisers become $readmemh images with the same words;
    anything else (another memory's block, a partial block) is left as it was."""
    from hrn_hw.rtl.resources import memory_images

    text = ("module m;\n  reg [7:0] rom [2:0];\n  initial begin\n    rom[0] = 8'h0a;\n    rom[1] = 8'sh1b;\n"
            "    rom[2] = 8'hff;\n  end\n  initial begin\n    x = 1;\n  end\nendmodule\n")
    out, n = memory_images(text, tmp_path, "src0")
    assert n == 1
    assert f'initial $readmemh("{tmp_path / "src0.rom.hex"}", rom);' in out and "x = 1;" in out
    assert (tmp_path / "src0.rom.hex").read_text().split() == ["0a", "1b", "ff"]
