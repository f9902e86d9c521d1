"""The RTL part of an export: write OUT/rtl, predict cycles on the golden vectors, optionally
count FPGA resources, and render that section of OUT/report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrn_hw.rtl.emit import TOP_NAME, VERILOG, write_rtl
from hrn_hw.rtl.knobs import NOMINAL_CLOCK_MHZ
from hrn_hw.rtl.latency import sample_cycles, sample_phases


def rtl_report_data(qm, rtl_dir: Path, knobs, routes: np.ndarray, tasks: np.ndarray, synth: bool,
                    schedule=None) -> dict:
    """Write OUT/rtl and return what the report says about it (JSON-ready). The pipelined top
    level's stream figures come from `schedule` (the throughput model,
    `hrn_hw.dataflow.stream.stream_schedule`, passed in by the caller)."""
    data = write_rtl(qm, rtl_dir, knobs)
    cycles = sample_cycles(qm, routes, knobs.with_(in_flight=1, replicas={}), tasks)
    if knobs.pipelined and schedule is not None and len(routes) > 1:
        sched = schedule(qm, routes, tasks, knobs)
        gaps = np.diff(np.sort(sched["done"]))
        data["predicted_stream"] = {"samples": int(len(routes)), "in_flight": knobs.in_flight,
                                    "replicas": dict(knobs.replicas), "interval_mean": float(gaps.mean()),
                                    "interval_median": float(np.median(gaps)),
                                    "latency_median": float(np.median(sched["latency"])),
                                    "latency_max": int(sched["latency"].max())}
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
    ps = rtl.get("predicted_stream")
    if ps:
        lines += [f"Pipelined top level: {ps['in_flight']} samples in flight, replicas "
                  f"{ps['replicas'] or 'none'}. Throughput model on the {ps['samples']} golden vectors as one "
                  f"back-to-back stream: initiation interval {ps['interval_mean']:.1f} cycles (mean), "
                  f"{ps['interval_median']:g} (median); latency {ps['latency_median']:g} cycles (median), "
                  f"{ps['latency_max']} (max). One sample at a time (in_flight 1) would take the cycles below.", ""]
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
