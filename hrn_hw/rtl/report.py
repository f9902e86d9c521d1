"""The RTL part of an export: write OUT/rtl, predict cycles on the golden vectors, optionally
count FPGA resources, and render that section of OUT/report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrn_hw.bench import DEFAULT_CLOCK_MHZ as NOMINAL_CLOCK_MHZ
from hrn_hw.rtl.emit import TOP_NAME, VERILOG, write_rtl
from hrn_hw.rtl.latency import sample_cycles, sample_phases


def rtl_report_data(qm, rtl_dir: Path, knobs, routes: np.ndarray, tasks: np.ndarray, synth: bool) -> dict:
    """Write OUT/rtl and return what the report says about it (JSON-ready)."""
    data = write_rtl(qm, rtl_dir, knobs)
    cycles = sample_cycles(qm, routes, knobs, tasks)
    if len(cycles):
        med = int(np.argsort(cycles)[len(cycles) // 2])
        data["predicted_cycles"] = {"samples": int(len(cycles)), "min": int(cycles.min()),
                                    "median": float(np.median(cycles)), "max": int(cycles.max()),
                                    "median_sample_phases": sample_phases(qm, routes[med], int(tasks[med]), knobs)}
    if synth:
        from hrn_hw.rtl.resources import synth_resources

        res = synth_resources([rtl_dir / VERILOG], TOP_NAME, rom_style="block")
        data["resources"] = {k: v for k, v in res.items() if k != "cells"}
    return data


def rtl_report_lines(rtl: dict) -> list[str]:
    """Markdown lines of the report's RTL section."""
    lines = ["## RTL (`rtl/hrn_top.v`)", "",
             f"Knobs: {rtl['knobs']} (conv lanes per unit: {rtl['conv_lanes']}). Map buffer "
             f"{rtl['map_buffer']['depth']} x {rtl['map_buffer']['width']} bits, {rtl['map_states']} map states, "
             f"{rtl['crossbar_calls']} crossbar calls. {rtl['memories']}.", ""]
    pc = rtl.get("predicted_cycles")
    if pc:
        us = pc["median"] / NOMINAL_CLOCK_MHZ
        lines += [f"Cycle model on the {pc['samples']} golden vectors: min {pc['min']}, median {pc['median']:g}, "
                  f"max {pc['max']} cycles per sample ({us:.1f} us at {NOMINAL_CLOCK_MHZ:g} MHz, nominal). Phases of "
                  f"the median sample: " + ", ".join(f"{k} {v}" for k, v in pc["median_sample_phases"].items()) + ".",
                  "", "Check the RTL with `hrn-hw verify OUT --against rtl` (Verilator, bit-exact, cycles).", ""]
    res = rtl.get("resources")
    if res:
        from hrn_hw.rtl.resources import resources_table

        lines += [f"Resources (Yosys `synth_xilinx -family {res['family']}`, ROMs as block RAM, before place "
                  f"and route; {res['yosys']}, {res['seconds']:.0f} s):", "", resources_table({"hrn_top": res}), ""]
    else:
        lines += ["Resources: not synthesised (export with `--synth` to add Yosys synth_xilinx counts).", ""]
    return lines
