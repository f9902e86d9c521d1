"""RTL knobs benchmark: cycles per sample against FPGA resources of the blocks the knobs change.

For one export (default runs/paper/export, the Pairwise-MNIST paper-config model):

1. cycles per sample (min / median / max / mean over the export's golden vectors) from the
   cycle model `hrn_hw.rtl.latency.sample_cycles` for every (conv_lanes, head_lanes) of a grid
   (the model equals the RTL's measured cycles, tests/test_rtl_top.py), with the mean of each
   phase (input, route, residue, conv, finish, head);
2. Yosys synth_xilinx (xc7, `rom_style="block"` by default: every ROM into block RAM)
   resources of the blocks the knobs change, one synthesis per point: unit 0's conv engine per
   conv lanes and the head engine per head lanes; and the fixed blocks once (hash unit,
   normaliser, projection comparator, residue with the export's parameters, as HrnTop builds
   them). A total is estimated as a per-block sum, fixed + E * conv engine (unit 0's, for each
   of the E units with an engine) + head; it is not a synthesis of the top level (no
   controller, crossbar, map/h/embedding buffers);
3. writes a JSON and a PNG (median cycles vs estimated total DSP48 and LUT, one point per knob
   setting, the default highlighted).

Syntheses run one at a time: the default knobs first, then the fixed blocks, then the other
lanes from the fewest up; a synthesis past --timeout seconds stops its series (the larger lanes). With
--resume, points already in the JSON (same export, same rom style) are not synthesised again.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_rtl_knobs.py \
        --export runs/paper/export --out docs/bench_rtl_knobs.json --plot docs/rtl_knobs.png
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrn_hw.bench import machine_record  # noqa: E402
from hrn_hw.export import vectors  # noqa: E402
from hrn_hw.export.ir import QuantModel  # noqa: E402
from hrn_hw.rtl.conv_engine import ConvEngine, conv_engine_params  # noqa: E402
from hrn_hw.rtl.crossbar import routing_table  # noqa: E402
from hrn_hw.rtl.gen import normaliser_params, write_verilog  # noqa: E402
from hrn_hw.rtl.hash_unit import HashUnit  # noqa: E402
from hrn_hw.rtl.head import LANES as HEAD_DEFAULT, HeadEngine, head_params  # noqa: E402
from hrn_hw.rtl.knobs import RtlKnobs  # noqa: E402
from hrn_hw.rtl.latency import sample_phases  # noqa: E402
from hrn_hw.rtl.normaliser import Normaliser  # noqa: E402
from hrn_hw.rtl.projection import ProjectionComparator  # noqa: E402
from hrn_hw.rtl.residue import Residue, residue_params  # noqa: E402
from hrn_hw.rtl.resources import YosysError, synth_resources  # noqa: E402

CYCLE_CONV_LANES = (16, 8, 4, 2, 1)
CYCLE_HEAD_LANES = (60, 20, 10, 5, 2, 1)
SYNTH_CONV_LANES = (16, 8, 4, 2)
SYNTH_HEAD_LANES = (60, 20, 10, 5, 2)
TARGET_MEDIAN = 2000
KEYS = ("LUT", "FF", "DSP", "BRAM", "RAMB36", "RAMB18", "LUTRAM", "SRL", "CARRY4", "MUXF")


def _lanes_list(text: str) -> tuple:
    return tuple(int(v) for v in text.split(",") if v.strip())


def cycle_grid(qm, vec, conv_lanes, head_lanes) -> list[dict]:
    """Cycle-model statistics over the golden samples for every knob pair."""
    routes, tasks = np.asarray(vec["routes"]), np.asarray(vec["tasks"])
    table = routing_table(qm)
    rows = []
    for cl in conv_lanes:
        for hl in head_lanes:
            knobs = RtlKnobs(conv_lanes=cl, head_lanes=hl)
            phases = [sample_phases(qm, r, int(t), knobs, table) for r, t in zip(routes, tasks)]
            total = np.array([sum(p.values()) for p in phases])
            rows.append({"conv_lanes": cl, "head_lanes": hl,
                         "min": int(total.min()), "median": float(np.median(total)),
                         "max": int(total.max()), "mean": round(float(total.mean()), 1),
                         "phase_mean": {k: round(float(np.mean([p[k] for p in phases])), 1) for k in phases[0]}})
    return rows


def fixed_blocks(qm) -> dict:
    """The blocks no knob changes, built as HrnTop builds them."""
    states = routing_table(qm).states
    map_width = max(st.width + (0 if st.signed else 1) for st in states)
    map_depth = max(st.size for st in states)
    return {
        "hash_unit": lambda: HashUnit(int(qm.s), map_width, True, map_depth, lanes=1),
        "normaliser": lambda: Normaliser(**normaliser_params(qm)),
        "projection": lambda: ProjectionComparator(qm.bases, qm.h_fmt, qm.basis_fmt, qm.coef_fmt),
        "residue": lambda: Residue(**residue_params(qm)),
    }


def synth_one(name: str, build, work: Path, timeout: float, rom_style) -> dict:
    t0 = time.monotonic()
    path = write_verilog(build(), name, work / f"{name}.v")
    gen = time.monotonic() - t0
    lines = sum(1 for _ in path.open())
    res = synth_resources(path, name, timeout=timeout, rom_style=rom_style)   # ROMs read as $readmemh images
    res["verilog_seconds"] = round(gen, 2)
    res["verilog_lines"] = lines
    for f in work.glob(f"{name}.*"):
        f.unlink()
    return res


def totals(res: dict, engines: int) -> list[dict]:
    """Per-block sums fixed + engines * conv(lanes) + head(lanes) for every synthesised pair."""
    fixed = res.get("fixed", {})
    if not all(isinstance(v, dict) and "LUT" in v for v in fixed.values()) or len(fixed) < 4:
        return []
    base = {k: sum(v[k] for v in fixed.values()) for k in KEYS}
    rows = []
    for cl, conv in res.get("conv_engine", {}).items():
        if "LUT" not in conv:
            continue
        for hl, head in res.get("head", {}).items():
            if "LUT" not in head:
                continue
            rows.append({"conv_lanes": int(cl), "head_lanes": int(hl),
                         **{k: base[k] + engines * conv[k] + head[k] for k in KEYS}})
    return rows


def plot(out: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cyc = {(r["conv_lanes"], r["head_lanes"]): r for r in out["cycles"]}
    pts = [(t, cyc[(t["conv_lanes"], t["head_lanes"])]) for t in out["totals"]
           if (t["conv_lanes"], t["head_lanes"]) in cyc]
    if not pts:
        raise SystemExit("nothing to plot: no total resources yet")
    conv_vals = sorted({t["conv_lanes"] for t, _ in pts}, reverse=True)
    head_vals = sorted({t["head_lanes"] for t, _ in pts}, reverse=True)
    markers = dict(zip(head_vals, "osD^vP*"))
    colors = dict(zip(conv_vals, plt.cm.viridis(np.linspace(0, 0.85, len(conv_vals)))))
    default = (out["default_knobs"]["conv_lanes"], out["default_knobs"]["head_lanes"])
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), sharey=True)
    for ax, key, label in ((axes[0], "DSP", "DSP48E1 (estimated total)"), (axes[1], "LUT", "LUT (estimated total)")):
        for t, c in pts:
            ax.scatter(t[key], c["median"], color=colors[t["conv_lanes"]], marker=markers[t["head_lanes"]],
                       s=45, zorder=3)
            ax.vlines(t[key], c["min"], c["max"], color=colors[t["conv_lanes"]], alpha=0.25, lw=1)
            if (t["conv_lanes"], t["head_lanes"]) == default:
                ax.scatter(t[key], c["median"], s=260, facecolors="none", edgecolors="red", lw=2, zorder=4)
                ax.annotate("default", (t[key], c["median"]), xytext=(8, 8), textcoords="offset points",
                            color="red", fontsize=8)
        ax.axhline(TARGET_MEDIAN, color="grey", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], TARGET_MEDIAN * 1.05, "  target median 2,000", color="grey", fontsize=8)
        ax.set_xlabel(label)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("cycles per sample (median; bar: min..max)")
    for cl in conv_vals:
        axes[0].scatter([], [], color=colors[cl], marker="o", label=f"conv lanes {cl}")
    for hl in head_vals:
        axes[1].scatter([], [], color="k", marker=markers[hl], label=f"head lanes {hl}")
    axes[0].legend(fontsize=7, loc="upper right")
    axes[1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"RTL knobs, {out['export_name']}: cycle model vs Yosys xc7 per-block sum "
                 f"(fixed + {out['conv_engines']} x conv engine + head; ROMs: {out['rom_style']})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(out: dict) -> str:
    """The tables of docs/rtl.md's knobs section."""
    cyc = {(r["conv_lanes"], r["head_lanes"]): r for r in out["cycles"]}
    convs = sorted({k[0] for k in cyc}, reverse=True)
    heads = sorted({k[1] for k in cyc}, reverse=True)
    lines = ["| conv lanes \\ head lanes | " + " | ".join(str(h) for h in heads) + " |",
             "|---|" + "---:|" * len(heads)]
    for cl in convs:
        cells = []
        for hl in heads:
            r = cyc[(cl, hl)]
            cell = f"{r['min']} / {r['median']:g} / {r['max']}"
            if (cl, hl) == (out["default_knobs"]["conv_lanes"], out["default_knobs"]["head_lanes"]):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {cl} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| block | lanes | LUT | FF | DSP48 | BRAM (36 Kb) | RAMB36 | RAMB18 | LUTRAM | CARRY4 | MUXF7/8 | Yosys s |")
    lines.append("|---|---:|" + "---:|" * 10)
    res = out["resources"]
    rows = [(name, "-", r) for name, r in res["fixed"].items()]
    rows += [("conv engine (unit 0)", k, r) for k, r in sorted(res["conv_engine"].items(), key=lambda kv: -int(kv[0]))]
    rows += [("head engine", k, r) for k, r in sorted(res["head"].items(), key=lambda kv: -int(kv[0]))]
    for name, lanes, r in rows:
        if "LUT" in r:
            lines.append(f"| {name} | {lanes} | " + " | ".join(f"{r[k]:g}" for k in
                         ("LUT", "FF", "DSP", "BRAM", "RAMB36", "RAMB18", "LUTRAM", "CARRY4", "MUXF"))
                         + f" | {r['seconds']:.0f} |")
        else:
            lines.append(f"| {name} | {lanes} | " + " | ".join(["-"] * 9) + f" | {r.get('error') or r.get('skipped')} |")
    if out["totals"]:
        lines.append("")
        lines.append("| conv lanes | head lanes | median cycles | LUT | FF | DSP48 | BRAM (36 Kb) |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|")
        for t in sorted(out["totals"], key=lambda t: (-t["conv_lanes"], -t["head_lanes"])):
            c = cyc[(t["conv_lanes"], t["head_lanes"])]
            lines.append(f"| {t['conv_lanes']} | {t['head_lanes']} | {c['median']:g} | {t['LUT']} | {t['FF']} | "
                         f"{t['DSP']} | {t['BRAM']:g} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", default="runs/paper/export", help="export directory (hrn-hw export -o)")
    ap.add_argument("--out", default="docs/bench_rtl_knobs.json")
    ap.add_argument("--plot", default="docs/rtl_knobs.png")
    ap.add_argument("--rom-style", default="block", choices=("block", "logic", "auto"))
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per synthesis (default 600)")
    ap.add_argument("--conv-lanes", type=_lanes_list, default=SYNTH_CONV_LANES, help="synthesised conv lanes")
    ap.add_argument("--head-lanes", type=_lanes_list, default=SYNTH_HEAD_LANES, help="synthesised head lanes")
    ap.add_argument("--no-synth", action="store_true", help="cycles only (keeps resources already in --out)")
    ap.add_argument("--resume", action="store_true", help="keep the resources already in --out")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown at the end")
    args = ap.parse_args()
    rom_style = None if args.rom_style == "auto" else args.rom_style
    export_dir = Path(args.export)
    out_path = Path(args.out)

    qm = QuantModel.load(export_dir)
    vec = vectors.load(export_dir)
    engines = sorted({int(c["unit"]) for c in qm.reachable})
    out: dict = {"export": str(export_dir), "export_name": export_dir.name if export_dir.name != "export"
                 else str(export_dir), "samples": int(len(vec["routes"])),
                 "s": int(qm.s), "M": int(qm.num_units), "d": int(qm.d), "conv_engines": len(engines),
                 "default_knobs": {"conv_lanes": int(qm.units[0].layers[0].out_channels), "head_lanes": HEAD_DEFAULT},
                 "rom_style": args.rom_style, "family": "xc7", **machine_record(ROOT)}
    t0 = time.perf_counter()
    out["cycles"] = cycle_grid(qm, vec, CYCLE_CONV_LANES, CYCLE_HEAD_LANES)
    out["cycle_model_seconds"] = round(time.perf_counter() - t0, 2)
    for r in out["cycles"]:
        print(f"conv lanes {r['conv_lanes']:2d} head lanes {r['head_lanes']:2d}: cycles min {r['min']} "
              f"median {r['median']:g} max {r['max']}  {r['phase_mean']}", flush=True)

    prev = {}
    if (args.resume or args.no_synth) and out_path.is_file():
        old = json.loads(out_path.read_text())
        if old.get("export") == out["export"] and old.get("rom_style") == out["rom_style"]:
            prev = old.get("resources", {})
    res = {"fixed": dict(prev.get("fixed", {})), "conv_engine": dict(prev.get("conv_engine", {})),
           "head": dict(prev.get("head", {}))}
    out["resources"] = res

    def save():
        out["totals"] = totals(res, len(engines))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1) + "\n")

    save()
    if not args.no_synth:
        fixed = fixed_blocks(qm)
        jobs = [("conv_engine", str(args.conv_lanes[0]), "conv_engine",
                 lambda L=args.conv_lanes[0]: ConvEngine(**conv_engine_params(qm, 0), lanes=L)),
                ("head", str(HEAD_DEFAULT), "head_engine", lambda: HeadEngine(**head_params(qm, lanes=HEAD_DEFAULT)))]
        jobs += [("fixed", name, name, build) for name, build in fixed.items()]
        jobs += [("conv_engine", str(L), "conv_engine",
                  lambda L=L: ConvEngine(**conv_engine_params(qm, 0), lanes=L)) for L in sorted(args.conv_lanes[1:])]
        jobs += [("head", str(L), "head_engine", lambda L=L: HeadEngine(**head_params(qm, lanes=L)))
                 for L in sorted(args.head_lanes) if L != HEAD_DEFAULT]   # cheapest first
        stopped = set()
        with tempfile.TemporaryDirectory(prefix="hrn-knobs-") as work:
            for series, key, top, build in jobs:
                if series in stopped and series != "fixed":
                    res[series][key] = {"skipped": "an earlier synthesis of this series ran past the limit"}
                    save()
                    continue
                if key in res[series] and "LUT" in res[series][key]:
                    continue
                print(f"synthesising {series} {key} ...", flush=True)
                try:
                    r = synth_one(top, build, Path(work), args.timeout, rom_style)
                except YosysError as e:
                    res[series][key] = {"error": str(e).splitlines()[0]}
                    if "past its" in str(e):
                        stopped.add(series)
                    print(f"  {series} {key}: {str(e).splitlines()[0]}", flush=True)
                else:
                    r.pop("family", None)
                    res[series][key] = r
                    print(f"  {series} {key}: " + ", ".join(f"{k} {r[k]:g}" for k in KEYS[:4])
                          + f"  ({r['seconds']:.0f} s yosys, {r['verilog_seconds']:.0f} s verilog)", flush=True)
                save()
    save()
    if out["totals"] and args.plot:
        print("plot:", plot(out, Path(args.plot)))
    print("wrote", out_path)
    if args.markdown:
        print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
