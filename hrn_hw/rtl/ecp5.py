"""Lattice ECP5 parts and what the open flow says about a design on them (docs/rtl.md,
"Implementation on ECP5 (open flow)"): resource counts of a `synth_ecp5` netlist, the fit
check, and the post-route Fmax, utilisation and critical path of nextpnr-ecp5's report.

Capacities are nextpnr-ecp5 0.11's own (its `--report` "available" figures for each device;
tests/test_implement.py checks the 25F's against a real run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hrn_hw.errors import HrnError

# Resources the fit check compares, in report order: (key, what it counts).
FIT_KEYS = (("LUT4", "LUT4s: logic, carry (2 per CCU2C) and LUT RAM (6 per TRELLIS_DPR16X4)"),
            ("FF", "TRELLIS_FF flip-flops"), ("MULT18X18D", "18x18 multipliers"),
            ("ALU54B", "54-bit DSP adders"), ("DP16KD", "18 Kb block RAMs"))

# nextpnr's utilisation names for the same resources (its TRELLIS_COMB is a packed LUT4 slot).
PNR_NAMES = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "MULT18X18D": "MULT18X18D",
             "ALU54B": "ALU54B", "DP16KD": "DP16KD"}


@dataclass(frozen=True)
class Part:
    """One ECP5 device as nextpnr-ecp5 names it, with its package and capacities."""

    key: str                 # the --part name, e.g. ecp5-85f
    device: str              # Lattice's name, e.g. LFE5U-85F
    flag: str                # nextpnr-ecp5's device option, e.g. --85k
    package: str
    capacity: dict = field(default_factory=dict)


def _capacity(lut4: int, mult: int, alu: int, ebr: int) -> dict:
    return {"LUT4": lut4, "FF": lut4, "MULT18X18D": mult, "ALU54B": alu, "DP16KD": ebr}


PARTS = {p.key: p for p in (
    Part("ecp5-25f", "LFE5U-25F", "--25k", "CABGA256", _capacity(24288, 28, 14, 56)),
    Part("ecp5-45f", "LFE5U-45F", "--45k", "CABGA381", _capacity(43848, 72, 36, 108)),
    Part("ecp5-85f", "LFE5U-85F", "--85k", "CABGA381", _capacity(83640, 156, 78, 208)),
)}


class FitError(HrnError):
    """The synthesised design needs more of some resource than the part has."""


def design_counts(cells: dict[str, int]) -> dict:
    """The fit check's resources (FIT_KEYS) from a synth_ecp5 netlist's cell counts. LUT4
    counts as nextpnr does before packing: LUT4 cells + 2 per CCU2C carry + 6 per
    TRELLIS_DPR16X4 distributed RAM (4 RAM and 2 write-port LUTs)."""
    get = lambda name: int(cells.get(name, 0))  # noqa: E731
    return {"LUT4": get("LUT4") + 2 * get("CCU2C") + 6 * get("TRELLIS_DPR16X4"),
            "FF": get("TRELLIS_FF"), "MULT18X18D": get("MULT18X18D"), "ALU54B": get("ALU54B"),
            "DP16KD": get("DP16KD")}


def fit_rows(counts: dict, part: Part) -> dict:
    """{resource: {used, available}} of the fit check."""
    return {key: {"used": int(counts[key]), "available": part.capacity[key]} for key, _ in FIT_KEYS}


def check_fit(counts: dict, part: Part, top: str) -> dict:
    """The fit rows, or FitError: one line with every count against the part, the overflowing
    ones marked."""
    rows = fit_rows(counts, part)
    over = [k for k, r in rows.items() if r["used"] > r["available"]]
    if over:
        said = ", ".join(f"{k} {r['used']:,} of {r['available']:,}" + (" (over)" if k in over else "")
                         for k, r in rows.items())
        raise FitError(f"{top} does not fit {part.device} ({part.key}): {said}")
    return rows


MAX_FREQ = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((PASS|FAIL) at ([0-9.]+) MHz\)")


def log_fmax(log: str) -> dict | None:
    """The LAST "Max frequency for clock" line of a nextpnr log (the post-route one):
    {clock, mhz, target_mhz, met}, or None when there is none."""
    found = MAX_FREQ.findall(log)
    if not found:
        return None
    clock, mhz, verdict, target = found[-1]
    return {"clock": clock, "mhz": float(mhz), "target_mhz": float(target), "met": verdict == "PASS"}


def clock_port(net: str) -> str:
    """The design's clock name behind a nextpnr clock net ('$glbnet$clk$TRELLIS_IO_IN' -> 'clk')."""
    m = re.fullmatch(r"\$glbnet\$(.+?)(\$TRELLIS_IO_IN)?", net)
    return m.group(1) if m else net


def report_fmax(report: dict) -> dict:
    """{clock, net, mhz, target_mhz, met} of the slowest clock in nextpnr's --report JSON."""
    clocks = report.get("fmax") or {}
    if not clocks:
        raise HrnError("nextpnr's report has no clock (is the design's clock port driven?)")
    net, f = min(clocks.items(), key=lambda kv: kv[1]["achieved"])
    mhz, target = float(f["achieved"]), float(f["constraint"])
    return {"clock": clock_port(net), "net": net, "mhz": round(mhz, 2), "target_mhz": target, "met": mhz >= target}


def report_utilisation(report: dict) -> dict:
    """{resource: {used, available}} of nextpnr's report, the resources in use only."""
    return {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in sorted((report.get("utilization") or {}).items()) if v.get("used")}


def _end(point: dict) -> str:
    return f"{point['cell']}.{point['port']}"


def _sources(segments: list[dict]) -> list[str]:
    return [s for seg in segments for s in seg.get("sources", [])]


def critical_path(report: dict, net: str) -> dict | None:
    """The longest clock-to-clock path of `net` in nextpnr's report: start and end cell.port,
    logic levels (segments of type logic; carry-chain steps, carry in to out, counted apart),
    and the delay by kind in ns. None when the report lists no such path."""
    edge = f"posedge {net}"
    paths = [p["path"] for p in report.get("critical_paths", []) if p.get("from") == edge and p.get("to") == edge]
    if not paths:
        return None
    path = max(paths, key=lambda segs: sum(s["delay"] for s in segs))
    delay = {}
    for seg in path:
        delay[seg["type"]] = delay.get(seg["type"], 0.0) + seg["delay"]
    logic = [s for s in path if s["type"] == "logic"]
    return {"from": _end(path[0]["from"]), "to": _end(path[-1]["to"]), "logic_levels": len(logic),
            "carry_steps": sum(1 for s in logic if s["from"]["port"].startswith("FCI")),
            "delay_ns": round(sum(delay.values()), 3), "delay_by_type_ns": {k: round(v, 3) for k, v in delay.items()},
            "sources": {"start": _sources(path[:3])[:2], "end": _sources(path[-3:])[-2:]}}
