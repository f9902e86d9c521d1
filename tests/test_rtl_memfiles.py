"""Memories as $readmemh files (hrn_hw/rtl/memfiles.py): the split of Amaranth's per-word
initial blocks on a tiny generated design (signed words, a 32-bit memory Yosys writes in
decimal, a multi-word row, contents shorter than the memory, a 1-bit and a zero RAM), the
forms it refuses, the export's OUT/rtl/, and the words read back on Verilator through the
files. This module is also the cocotb test module of that Verilator run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from hrn_hw.rtl.knobs import RtlKnobs

from hrn_hw.rtl.memfiles import extract_memories, memfile_names, split_memories, verilog_and_memfiles

DEPTH = 6
# name: (width, signed, words per row or None, init)
SPECS = {
    "s8": (8, True, None, [-1, -128, 127, 5]),
    "s32": (32, True, None, [-5, 7, -2 ** 31, 2 ** 31 - 1, 0, -1]),
    "u12": (12, False, None, [1, 2]),
    "row": (5, True, 3, [-1, 2, -3, 4, 5, -16, 15]),
    "b1": (1, False, None, [1, 0, 1]),
    "ram": (16, False, None, []),
}


def _row_values(name: str) -> list:
    """The memory's DEPTH words as unsigned bit patterns (what the hex files must hold)."""
    from hrn_hw.rtl.rows import row_init

    width, _, words, init = SPECS[name]
    rows = row_init(init, width, words) if words else init
    bits = width * (words or 1)
    return [v & ((1 << bits) - 1) for v in rows] + [0] * (DEPTH - len(rows))


def tiny_design():
    """A component with one synchronous read port per memory of SPECS, all on one address."""
    from amaranth import Module, signed
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    from hrn_hw.rtl.rows import row_init, row_shape

    def shape(name):
        width, is_signed, words, _ = SPECS[name]
        return row_shape(width, words, is_signed) if words else (signed(width) if is_signed else width)

    class Tiny(wiring.Component):
        def __init__(self):
            super().__init__({"addr": In(range(DEPTH)), **{f"q_{n}": Out(shape(n)) for n in SPECS}})

        def elaborate(self, platform):
            m = Module()
            for name, (width, _, words, init) in SPECS.items():
                m.submodules[name] = mem = memory.Memory(shape=shape(name), depth=DEPTH,
                                                         init=row_init(init, width, words) if words else init)
                port = mem.read_port()
                m.d.comb += [port.addr.eq(self.addr), getattr(self, f"q_{name}").eq(port.data)]
            return m

    return Tiny()


@pytest.fixture(scope="module")
def tiny_verilog():
    from hrn_hw.rtl.gen import to_verilog

    return to_verilog(tiny_design(), "memtiny")


def _without_inits(text: str) -> str:
    """The text without memory initial blocks and $readmemh lines."""
    text = re.sub(r"(?m)^\s*initial begin\n(?:\s*\S+\[\d+\] = [^\n]*\n)*\s*end\n", "", text)
    return re.sub(r"(?m)^\s*initial \$readmemh\([^\n]*\n", "", text)


def test_split_holds_the_words(tiny_verilog):
    new, files = split_memories(tiny_verilog)
    assert sorted(files) == sorted(f"memtiny.{n}.hex" for n in SPECS)
    for name in SPECS:
        width = SPECS[name][0] * (SPECS[name][2] or 1)
        lines = files[f"memtiny.{name}.hex"].splitlines()
        assert [int(w, 16) for w in lines] == _row_values(name), name
        assert {len(w) for w in lines} == {-(-width // 4)}, name
        assert f'initial $readmemh("memtiny.{name}.hex", {name});' in new
    assert "32'd4294967291" in tiny_verilog          # the decimal form Yosys writes for 32 bits
    assert "initial begin" not in new and _without_inits(new) == _without_inits(tiny_verilog)
    assert memfile_names(new) == [m.file for m in extract_memories(tiny_verilog)[1]]
    assert split_memories(new) == (new, {})          # nothing left to split
    mems = {m.memory: m for m in extract_memories(tiny_verilog)[1]}
    assert (mems["memtiny.row"].depth, mems["memtiny.row"].width) == (DEPTH, 15)


def test_file_names_are_readable_and_unique():
    text = ("module \\top.sub (clk);\n  reg [3:0] \\rom$1  [1:0];\n  initial begin\n    \\rom$1 [0] = 4'h1;\n"
            "    \\rom$1 [1] = 4'h2;\n  end\n  reg [3:0] rom_1 [0:0];\n  initial begin\n    rom_1[0] = 4'h3;\n"
            "  end\n  reg [3:0] ROM_1 [0:0];\n  initial begin\n    ROM_1[0] = 4'h4;\n  end\nendmodule\n")
    new, files = split_memories(text)
    assert list(files) == ["top.sub.rom_1.hex", "top.sub.rom_1_2.hex", "top.sub.ROM_1_3.hex"]
    assert 'initial $readmemh("top.sub.rom_1.hex", \\rom$1 );' in new
    assert list(files.values()) == ["1\n2\n", "3\n", "4\n"]


BAD_BLOCKS = {
    "binary word": "    rom[0] = 8'b00000001;\n    rom[1] = 8'h00;\n",
    "x word": "    rom[0] = 8'hxx;\n    rom[1] = 8'h00;\n",
    "missing word": "    rom[0] = 8'h01;\n",
    "out of order": "    rom[1] = 8'h01;\n    rom[0] = 8'h00;\n",
    "wrong width": "    rom[0] = 9'h001;\n    rom[1] = 8'h00;\n",
    "too wide a value": "    rom[0] = 8'd256;\n    rom[1] = 8'h00;\n",
    "other statement": "    rom[0] = 8'h01;\n    $display(1);\n    rom[1] = 8'h00;\n",
}


@pytest.mark.parametrize("case", sorted(BAD_BLOCKS))
def test_unexpected_forms_raise(case):
    text = f"module m(clk);\n  reg [7:0] rom [1:0];\n  initial begin\n{BAD_BLOCKS[case]}  end\nendmodule\n"
    with pytest.raises(ValueError, match="memory m.rom"):
        split_memories(text)


@pytest.mark.parametrize("decl", ["reg signed [7:0] rom [1:0];", "reg [7:0] rom [0:1];", "reg [8:1] rom [1:0];"])
def test_unexpected_declarations_raise(decl):
    text = f"module m(clk);\n  {decl}\n  initial begin\n    rom[0] = 8'h01;\n    rom[1] = 8'h00;\n  end\nendmodule\n"
    with pytest.raises(ValueError, match="memory (m.)?rom"):
        split_memories(text)


def test_other_initial_blocks_stay():
    text = "module m(clk);\n  reg x;\n  initial begin\n    x = 1'h0;\n  end\nendmodule\n"
    assert split_memories(text) == (text, {})


def test_verilog_file_brings_its_files(tmp_path, tiny_verilog):
    new, files = split_memories(tiny_verilog)
    (tmp_path / "memtiny.v").write_text(new)
    for name, words in files.items():
        (tmp_path / name).write_text(words)
    assert verilog_and_memfiles(tmp_path / "memtiny.v") == (new, files)
    (tmp_path / "memtiny.s8.hex").unlink()
    with pytest.raises(ValueError, match="memtiny.s8.hex missing"):
        verilog_and_memfiles(tmp_path / "memtiny.v")


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
def test_yosys_reads_the_same_contents(tmp_path, tiny_verilog):
    """Yosys (run elsewhere: it finds the files beside the Verilog) gets the same memory
    contents from the files as from the inline blocks."""
    new, files = split_memories(tiny_verilog)
    (tmp_path / "rtl").mkdir()
    (tmp_path / "inline.v").write_text(tiny_verilog)
    (tmp_path / "rtl" / "memtiny.v").write_text(new)
    for name, words in files.items():
        (tmp_path / "rtl" / name).write_text(words)

    def inits(path):
        out = subprocess.run(["yosys", "-p", f"read_verilog {path}; proc; memory_collect; dump t:$mem_v2"],
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        return sorted(re.findall(r"parameter \\(?:MEMID|INIT) (\S+)", out))

    assert inits("inline.v") == inits("rtl/memtiny.v") and len(inits("inline.v")) == 2 * len(SPECS)


def test_export_writes_the_files(tmp_path, monkeypatch, tiny_verilog):
    """write_rtl (the fixture model, the tiny design's Verilog in place of its top level's):
    the Verilog reads every memory from a file beside it, rtl.json lists them, a second write
    (a cache hit) gives the same files and drops stale ones."""
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl import emit
    from simlib import small_export

    monkeypatch.setenv(emit.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(emit, "to_verilog", lambda top, name: tiny_verilog)
    qm = QuantModel.load(small_export())
    rtl = tmp_path / "rtl"
    summary = emit.write_rtl(qm, rtl, RtlKnobs(in_flight=1))
    text = (rtl / "hrn_top.v").read_text()
    listed = {m["file"]: m for m in json.loads((rtl / "rtl.json").read_text())["memory_files"]}
    assert text == split_memories(tiny_verilog)[0]
    assert sorted(memfile_names(text)) == sorted(listed) == sorted(p.name for p in rtl.glob("*.hex"))
    assert listed["memtiny.row.hex"] == {"file": "memtiny.row.hex", "memory": "memtiny.row", "depth": DEPTH,
                                         "width": 15}
    assert f"{len(SPECS)} $readmemh files" in summary["memories"]
    before = {p.name: p.read_text() for p in rtl.glob("*.hex")}
    (rtl / "stale.hex").write_text("0\n")
    monkeypatch.setattr(emit, "to_verilog", None)       # the cache answers
    emit.write_rtl(qm, rtl, RtlKnobs(in_flight=1))
    assert {p.name: p.read_text() for p in rtl.glob("*.hex")} == before


# ---- Verilator: the words read back through the files -------------------------------------

try:
    import cocotb
except ImportError:          # the split tests above run without cocotb
    cocotb = None


if cocotb is not None:
    @cocotb.test()
    async def memories_read_back(dut):
        """Every word of every memory, read at each address, equals the init."""
        from cocotb.triggers import FallingEdge

        from simlib import params, start

        expected = params()["expected"]
        await start(dut)
        for addr in range(DEPTH):
            dut.addr.value = addr
            await FallingEdge(dut.clk)          # the read port's register took the address
            got = {n: int(getattr(dut, f"q_{n}").value) for n in SPECS}
            assert got == {n: expected[n][addr] for n in SPECS}, f"address {addr}: {got}"


@pytest.mark.skipif(cocotb is None, reason="cocotb not installed")
def test_verilator_reads_the_files():
    from cocotb_tools.runner import get_results
    from simlib import BUILD_DIR, run_dut

    xml = run_dut(tiny_design(), "memtiny", "test_rtl_memfiles", {"expected": {n: _row_values(n) for n in SPECS}},
                  build_name="memfiles", ports_only=True)
    assert get_results(xml) == (1, 0)           # the cocotb test ran, and passed
    build = BUILD_DIR / "memfiles"
    assert "initial begin" not in (build / "memtiny.v").read_text()
    assert sorted(p.name for p in build.glob("*.hex")) == sorted(f"memtiny.{n}.hex" for n in SPECS)
    assert os.path.getsize(build / "memtiny.s8.hex") == DEPTH * 3


@pytest.mark.skipif(cocotb is None, reason="cocotb not installed")
def test_rtl_simulation_of_an_export_without_its_files_is_refused(tmp_path):
    from hrn_hw.hls.csim import ToolError
    from hrn_hw.rtl.rtlsim import simulate_export

    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "hrn_top.v").write_text('module hrn_top;\n  reg [3:0] m [1:0];\n'
                                               '  initial $readmemh("hrn_top.m.hex", m);\nendmodule\n')
    with pytest.raises(ToolError, match=r"1 memory files of hrn_top.v missing \(hrn_top.m.hex\); export again"):
        simulate_export(tmp_path, None, {"tasks": []})
