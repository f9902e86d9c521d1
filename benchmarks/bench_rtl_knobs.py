"""RTL knobs benchmark: cycles per sample against FPGA resources of the blocks the knobs change.

For one export (--export; default runs/paper/export: the Pairwise-MNIST paper-config model), with the knobs of `hrn_hw.rtl.knobs.RtlKnobs` (words W per beat,
conv_lanes, pixel_lanes, head_lanes, root_bits):

1. cycles per sample (min / median / max / mean over the export's golden vectors, and the mean
   of each phase: input, route, residue, conv, finish, head) from the cycle model
   `hrn_hw.rtl.latency.sample_phases` (it equals the RTL's measured cycles,
   tests/test_rtl_top.py): a words x pixel_lanes grid at the other defaults, and head_lanes,
   root_bits and conv_lanes lines at the defaults;
2. Yosys synth_xilinx (xc7, `rom_style="block"` by default: every ROM into block RAM)
   resources of every block of the top level, built as HrnTop builds them, one synthesis per
   point: hash unit, normaliser, projection comparator, residue and head at several words,
   unit 0's conv engine at several words and pixel lanes and at fewer conv lanes, the head at
   several head lanes, the normaliser at several root bits.
   A total is estimated per knob setting as a per-block sum: hash + normaliser + projection +
   residue + E x conv engine (unit 0's, for each of the E units with an engine) + head; it is
   not a synthesis of the top level (no controller, crossbar, map/h/embedding buffers);
3. writes a JSON and a PNG (median cycles vs estimated total DSP48 and LUT, one point per
   synthesised knob setting, the default highlighted).

Syntheses run one at a time: the default knobs first (the small blocks, the head), then unit
0's conv engine over pixel lanes (fewest first), then the other words, the other head lanes,
the conv engine at the other words, the normaliser's root bits, the conv lanes. A synthesis past --timeout seconds stops its block's
later points that are at least as large in every knob. With --resume, points already in the
JSON (same export, same rom style) are not synthesised again; --no-synth computes the cycles
only and keeps the resources already in --out.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_rtl_knobs.py \
        --export runs/paper/export --out results/bench_rtl_knobs.json --plot results/rtl_knobs.png
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
from hrn_hw.rtl.gen import write_verilog  # noqa: E402
from hrn_hw.rtl.hash_unit import HashUnit  # noqa: E402
from hrn_hw.rtl.head import HeadEngine, head_params  # noqa: E402
from hrn_hw.rtl.knobs import RtlKnobs  # noqa: E402
from hrn_hw.rtl.latency import sample_phases  # noqa: E402
from hrn_hw.rtl.normaliser import Normaliser  # noqa: E402
from hrn_hw.rtl.projection import ProjectionComparator  # noqa: E402
from hrn_hw.rtl.residue import Residue, residue_params  # noqa: E402
from hrn_hw.rtl.resources import YosysError, synth_resources  # noqa: E402

DEFAULT = RtlKnobs()
CYCLE_WORDS = (1, 2, 4, 8, 16)
CYCLE_PIXEL_LANES = (1, 2, 4, 8, 16)
CYCLE_HEAD_LANES = (5, 10, 20, 60)
CYCLE_ROOT_BITS = (1, 2, 4)
CYCLE_CONV_LANES = (16, 8, 4)
SYNTH_WORDS = (1, 4, 8)
SYNTH_PIXEL_LANES = (1, 4, 8)          # conv engine, at words = default
SYNTH_HEAD_LANES = (10, 20)            # head, at words = default
SYNTH_ROOT_BITS = (1, 2, 4)            # normaliser, at words = default
SYNTH_CONV_LANES = (8,)                # conv engine, at the other defaults (all lanes is the default)
TARGET_MEDIAN = 2000
KEYS = ("LUT", "FF", "DSP", "BRAM", "RAMB36", "RAMB18", "LUTRAM", "SRL", "CARRY4", "MUXF")
SMALL_BLOCKS = ("hash_unit", "normaliser", "projection", "residue")
BLOCK_NAMES = {"hash_unit": "hash unit", "normaliser": "normaliser", "projection": "projection comparator",
               "residue": "residue + embedding", "conv_engine": "conv engine (unit 0)", "head": "head engine"}


def _ints(text: str) -> tuple:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _label(knobs: RtlKnobs) -> str:
    cl = "=all" if knobs.conv_lanes is None else knobs.conv_lanes
    return f"W{knobs.words} P{knobs.pixel_lanes} H{knobs.head_lanes} r{knobs.root_bits} C{cl}"


def cycle_settings() -> list[tuple[str, RtlKnobs]]:
    """(series, knobs) of the cycle grid: words x pixel lanes, then head lanes, root bits and
    conv lanes lines at the defaults (the default appears in every series)."""
    out = [("words x pixel_lanes", RtlKnobs(words=w, pixel_lanes=p))
           for w in CYCLE_WORDS for p in CYCLE_PIXEL_LANES]
    out += [("head_lanes", RtlKnobs(head_lanes=h)) for h in CYCLE_HEAD_LANES]
    out += [("root_bits", RtlKnobs(root_bits=r)) for r in CYCLE_ROOT_BITS]
    out += [("conv_lanes", RtlKnobs(conv_lanes=c)) for c in CYCLE_CONV_LANES]
    return out


def cycle_stats(qm, vec, knobs: RtlKnobs, table) -> dict:
    routes, tasks = np.asarray(vec["routes"]), np.asarray(vec["tasks"])
    phases = [sample_phases(qm, r, int(t), knobs, table) for r, t in zip(routes, tasks)]
    total = np.array([sum(p.values()) for p in phases])
    return {"min": int(total.min()), "median": float(np.median(total)), "max": int(total.max()),
            "mean": round(float(total.mean()), 1),
            "phase_mean": {k: round(float(np.mean([p[k] for p in phases])), 1) for k in phases[0]}}


def cycle_grid(qm, vec) -> list[dict]:
    table = routing_table(qm)
    rows, seen = [], {}
    for series, knobs in cycle_settings():
        key = _label(knobs)
        if key in seen:
            seen[key]["series"].append(series)
            continue
        row = {"series": [series], "knobs": knobs.to_dict(), "label": key, **cycle_stats(qm, vec, knobs, table)}
        seen[key] = row
        rows.append(row)
    return rows


def builders(qm) -> dict:
    """Block constructors (knobs -> component), as HrnTop builds them."""
    states = routing_table(qm).states
    map_width = max(st.width + (0 if st.signed else 1) for st in states)
    map_depth = max(st.size for st in states)
    s = int(qm.s)
    return {
        "hash_unit": lambda k: HashUnit(s, map_width, True, map_depth, words=k.words),
        "normaliser": lambda k: Normaliser(s, int(qm.norm_k), qm.h_fmt, words=k.words, root_bits=k.root_bits),
        "projection": lambda k: ProjectionComparator(qm.bases, qm.h_fmt, qm.basis_fmt, qm.coef_fmt, words=k.words),
        "residue": lambda k: Residue(**residue_params(qm, words=k.words)),
        "conv_engine": lambda k: ConvEngine(**conv_engine_params(qm, 0), lanes=k.lanes_of(qm.units[0]),
                                            words=k.words, pixel_lanes=k.pixel_lanes),
        "head": lambda k: HeadEngine(**head_params(qm, lanes=k.head_lanes, words=k.words)),
    }


# The knobs each block depends on (its key in the JSON names only these).
BLOCK_KNOBS = {"hash_unit": ("words",), "normaliser": ("words", "root_bits"), "projection": ("words",),
               "residue": ("words",), "conv_engine": ("words", "pixel_lanes", "conv_lanes"),
               "head": ("words", "head_lanes")}
SHORT = {"words": "W", "pixel_lanes": "P", "head_lanes": "H", "root_bits": "r", "conv_lanes": "C"}


def block_key(block: str, knobs: RtlKnobs) -> str:
    d = knobs.to_dict()
    return " ".join(f"{SHORT[n]}{'all' if d[n] is None else d[n]}" for n in BLOCK_KNOBS[block])


def synth_jobs(words, pixel_lanes, head_lanes, root_bits=(), conv_lanes=()) -> list[tuple[str, RtlKnobs]]:
    """(block, knobs) in run order: defaults, conv pixel lanes, other words, head lanes, conv
    words, normaliser root bits, conv lanes."""
    jobs = [(b, DEFAULT) for b in SMALL_BLOCKS + ("head",)]
    jobs += [("conv_engine", RtlKnobs(pixel_lanes=p)) for p in sorted(set(pixel_lanes) | {DEFAULT.pixel_lanes})]
    other_words = [w for w in sorted(words) if w != DEFAULT.words]
    jobs += [(b, RtlKnobs(words=w)) for b in SMALL_BLOCKS + ("head",) for w in other_words]
    jobs += [("head", RtlKnobs(head_lanes=h)) for h in sorted(head_lanes) if h != DEFAULT.head_lanes]
    jobs += [("conv_engine", RtlKnobs(words=w)) for w in other_words]
    jobs += [("normaliser", RtlKnobs(root_bits=r)) for r in sorted(root_bits) if r != DEFAULT.root_bits]
    jobs += [("conv_engine", RtlKnobs(conv_lanes=c)) for c in sorted(conv_lanes)]
    out, seen = [], set()
    for b, k in jobs:
        if (b, block_key(b, k)) not in seen:
            seen.add((b, block_key(b, k)))
            out.append((b, k))
    return out


def _size(block: str, knobs: RtlKnobs) -> tuple:
    d = knobs.to_dict()
    return tuple(99 if d[n] is None else d[n] for n in BLOCK_KNOBS[block])


def synth_one(name: str, component, work: Path, timeout: float, rom_style) -> dict:
    t0 = time.monotonic()
    path = write_verilog(component, name, work / f"{name}.v")
    gen = time.monotonic() - t0
    lines = sum(1 for _ in path.open())
    res = synth_resources(path, name, timeout=timeout, rom_style=rom_style)   # ROMs read as $readmemh images
    res["verilog_seconds"] = round(gen, 2)
    res["verilog_lines"] = lines
    for f in work.glob(f"{name}.*"):
        f.unlink()
    return res


def total_settings(words, pixel_lanes, head_lanes, root_bits=(), conv_lanes=()) -> list[RtlKnobs]:
    """Knob settings whose per-block sum is estimated (every block synthesised at them)."""
    out = [RtlKnobs(words=w) for w in sorted(words)]
    out += [RtlKnobs(pixel_lanes=p) for p in sorted(pixel_lanes) if p != DEFAULT.pixel_lanes]
    out += [RtlKnobs(head_lanes=h) for h in sorted(head_lanes) if h != DEFAULT.head_lanes]
    out += [RtlKnobs(root_bits=r) for r in sorted(root_bits) if r != DEFAULT.root_bits]
    out += [RtlKnobs(conv_lanes=c) for c in sorted(conv_lanes)]
    return out


def totals(res: dict, engines: int, settings) -> list[dict]:
    """Per-block sums hash + normaliser + projection + residue + engines x conv + head."""
    rows = []
    for k in settings:
        parts = {b: res.get(b, {}).get(block_key(b, k), {}) for b in BLOCK_KNOBS}
        if not all("LUT" in p for p in parts.values()):
            continue
        mult = {b: (engines if b == "conv_engine" else 1) for b in parts}
        rows.append({"knobs": k.to_dict(), "label": _label(k),
                     "parts": {b: block_key(b, k) for b in parts},
                     **{key: sum(mult[b] * p[key] for b, p in parts.items()) for key in KEYS}})
    return rows


def _cycles_of(out: dict, knobs: dict) -> dict | None:
    for r in out["cycles"]:
        if r["knobs"] == knobs:
            return r
    return None


SERIES_COLORS = {"words": ("words W (others default)", "tab:blue", "W"),
                 "pixel_lanes": ("pixel lanes P (W 8)", "tab:green", "P"),
                 "head_lanes": ("head lanes H (W 8)", "tab:orange", "H"),
                 "root_bits": ("root bits r (W 8)", "tab:purple", "r"),
                 "conv_lanes": ("conv lanes C (W 8)", "tab:brown", "C")}


SERIES_OFFSETS = {"words": (5, -10), "pixel_lanes": (5, -10), "head_lanes": (-26, -3), "root_bits": (6, 2),
                  "conv_lanes": (-22, 4)}


def _series(k: dict) -> str:
    """The knob in which `k` differs from the default (words when none or several)."""
    diff = [n for n, v in k.items() if v != DEFAULT.to_dict()[n]]
    return diff[0] if len(diff) == 1 else "words"


def plot(out: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(t, _cycles_of(out, t["knobs"])) for t in out["totals"]]
    pts = [(t, c) for t, c in pts if c is not None]
    if not pts:
        raise SystemExit("nothing to plot: no total resources yet")
    default = DEFAULT.to_dict()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.8), sharey=True)
    for ax, key, label in ((axes[0], "DSP", "DSP48E1 (estimated per-block sum)"),
                           (axes[1], "LUT", "LUT (estimated per-block sum)")):
        for t, c in pts:
            k = t["knobs"]
            series = _series(k)
            color = SERIES_COLORS[series][1]
            ax.scatter(t[key], c["median"], color=color, s=45, zorder=3)
            ax.vlines(t[key], c["min"], c["max"], color=color, alpha=0.3, lw=1)
            text = SERIES_COLORS[series][2] + str(k[series] if k[series] is not None else "all")
            ax.annotate(text, (t[key], c["median"]), xytext=SERIES_OFFSETS[series], textcoords="offset points",
                        fontsize=7, color=color)
            if k == default:
                ax.scatter(t[key], c["median"], s=260, facecolors="none", edgecolors="red", lw=2, zorder=4)
                ax.annotate("default", (t[key], c["median"]), xytext=(8, 8), textcoords="offset points",
                            color="red", fontsize=8)
        ax.axhline(TARGET_MEDIAN, color="grey", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], TARGET_MEDIAN * 1.05, "  target median 2,000", color="grey", fontsize=8)
        ax.set_xlabel(label)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("cycles per sample (median; bar: min..max)")
    for name, color, _ in SERIES_COLORS.values():
        axes[0].scatter([], [], color=color, label=name)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"RTL knobs, {out['export_name']}: cycle model vs Yosys xc7 per-block sum (not a top-level "
                 f"synthesis; hash + norm + proj + residue + {out['conv_engines']} x conv engine + head; "
                 f"ROMs: {out['rom_style']})", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cell(r: dict) -> str:
    return f"{r['min']} / {r['median']:g} / {r['max']}"


def markdown(out: dict) -> str:
    """The tables of docs/rtl.md's knobs section."""
    default = DEFAULT.to_dict()
    grid = {(r["knobs"]["words"], r["knobs"]["pixel_lanes"]): r for r in out["cycles"]
            if "words x pixel_lanes" in r["series"]}
    ws = sorted({k[0] for k in grid})
    ps = sorted({k[1] for k in grid})
    lines = ["| words \\ pixel lanes | " + " | ".join(str(p) for p in ps) + " |", "|---|" + "---:|" * len(ps)]
    for w in ws:
        cells = []
        for p in ps:
            c = _cell(grid[(w, p)])
            cells.append(f"**{c}**" if grid[(w, p)]["knobs"] == default else c)
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    lines += ["", "| knob (others default) | value | min / median / max | mean | input | route | residue | conv | "
              "finish | head |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = (("words", "words x pixel_lanes", lambda k: k["pixel_lanes"] == default["pixel_lanes"]),
             ("pixel_lanes", "words x pixel_lanes", lambda k: k["words"] == default["words"]),
             ("head_lanes", "head_lanes", lambda k: True), ("root_bits", "root_bits", lambda k: True),
             ("conv_lanes", "conv_lanes", lambda k: True))
    for knob, series, keep in order:
        rows = [r for r in out["cycles"] if series in r["series"] and keep(r["knobs"])]
        rows.sort(key=lambda r: 99 if r["knobs"][knob] is None else r["knobs"][knob])
        for r in rows:
            v = r["knobs"][knob]
            v = "16 (all)" if v is None else v
            pm = r["phase_mean"]
            bold = r["knobs"] == default
            vals = [_cell(r), f"{r['mean']:g}"] + [f"{pm[k]:g}" for k in ("input", "route", "residue", "conv",
                                                                            "finish", "head")]
            if bold:
                vals[0] = f"**{vals[0]}**"
            lines.append(f"| {knob} | {v} | " + " | ".join(vals) + " |")
    lines += ["", "| block | knobs | LUT | FF | DSP48 | BRAM (36 Kb) | RAMB36 | RAMB18 | LUTRAM | CARRY4 | MUXF7/8 | "
              "Yosys s |", "|---|---|" + "---:|" * 10]
    for block, entries in out["resources"].items():
        for key, r in sorted(entries.items(), key=lambda kv: [int(t[1:]) if t[1:].isdigit() else 99
                                                             for t in kv[0].split()]):
            name = BLOCK_NAMES.get(block, block)
            key = ", ".join(f"{n} {'all' if v is None else v}" for n, v in r.get("knobs", {}).items()) or key
            if "LUT" in r:
                lines.append(f"| {name} | {key} | " + " | ".join(f"{r[k]:g}" for k in
                             ("LUT", "FF", "DSP", "BRAM", "RAMB36", "RAMB18", "LUTRAM", "CARRY4", "MUXF"))
                             + f" | {r['seconds']:.0f} |")
            else:
                lines.append(f"| {name} | {key} | " + " | ".join(["-"] * 9) + f" | {r.get('error') or r.get('skipped')} |")
    if out["totals"]:
        lines += ["", "| knobs | median cycles | LUT | FF | DSP48 | BRAM (36 Kb) |", "|---|---:|---:|---:|---:|---:|"]
        for t in out["totals"]:
            c = _cycles_of(out, t["knobs"])
            k = t["knobs"]
            name = (f"W {k['words']}, P {k['pixel_lanes']}, H {k['head_lanes']}, r {k['root_bits']}, "
                    f"C {'all' if k['conv_lanes'] is None else k['conv_lanes']}")
            cells = [name, f"{c['median']:g}" if c else "-", str(t["LUT"]), str(t["FF"]), str(t["DSP"]), f"{t['BRAM']:g}"]
            if k == default:
                cells = [f"**{v}**" for v in cells]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", default="runs/paper/export",
                    help="export directory (hrn-hw export -o); default runs/paper/export")
    ap.add_argument("--out", default="results/bench_rtl_knobs.json")
    ap.add_argument("--plot", default="results/rtl_knobs.png")
    ap.add_argument("--rom-style", default="block", choices=("block", "logic", "auto"))
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per synthesis (default 900)")
    ap.add_argument("--words", type=_ints, default=SYNTH_WORDS, help="synthesised words (every block)")
    ap.add_argument("--pixel-lanes", type=_ints, default=SYNTH_PIXEL_LANES,
                    help="synthesised conv pixel lanes (at the default words)")
    ap.add_argument("--head-lanes", type=_ints, default=SYNTH_HEAD_LANES,
                    help="synthesised head lanes (at the default words)")
    ap.add_argument("--root-bits", type=_ints, default=SYNTH_ROOT_BITS,
                    help="synthesised normaliser root bits (at the default words)")
    ap.add_argument("--conv-lanes", type=_ints, default=SYNTH_CONV_LANES,
                    help="synthesised conv lanes besides all (at the other defaults)")
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
                 "default_knobs": DEFAULT.to_dict(), "target_median": TARGET_MEDIAN,
                 "rom_style": args.rom_style, "family": "xc7", "timeout_s": args.timeout, **machine_record(ROOT)}
    t0 = time.perf_counter()
    out["cycles"] = cycle_grid(qm, vec)
    out["cycle_model_seconds"] = round(time.perf_counter() - t0, 2)
    for r in out["cycles"]:
        print(f"{r['label']:24s}: cycles min {r['min']} median {r['median']:g} max {r['max']} mean {r['mean']:g}  "
              f"{r['phase_mean']}", flush=True)

    prev = {}
    if (args.resume or args.no_synth) and out_path.is_file():
        old = json.loads(out_path.read_text())
        if old.get("export") == out["export"] and old.get("rom_style") == out["rom_style"] \
                and isinstance(old.get("resources", {}).get("hash_unit"), dict):
            prev = old.get("resources", {})
    res = {b: dict(prev.get(b, {})) for b in BLOCK_KNOBS}
    out["resources"] = res
    settings = total_settings(args.words, args.pixel_lanes, args.head_lanes, args.root_bits, args.conv_lanes)

    def save():
        out["totals"] = totals(res, len(engines), settings)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1) + "\n")

    save()
    if not args.no_synth:
        build = builders(qm)
        stopped: dict[str, list] = {}
        t_all = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="hrn-knobs-") as work:
            for block, knobs in synth_jobs(args.words, args.pixel_lanes, args.head_lanes, args.root_bits,
                                           args.conv_lanes):
                key = block_key(block, knobs)
                if key in res[block] and "LUT" in res[block][key]:
                    continue
                size = _size(block, knobs)
                if any(all(a >= b for a, b in zip(size, big)) for big in stopped.get(block, [])):
                    res[block][key] = {"skipped": "a smaller synthesis of this block ran past the limit"}
                    save()
                    continue
                print(f"synthesising {block} {key} ...", flush=True)
                try:
                    r = synth_one(block, build[block](knobs), Path(work), args.timeout, rom_style)
                except YosysError as e:
                    res[block][key] = {"error": str(e).splitlines()[0]}
                    if "past its" in str(e):
                        stopped.setdefault(block, []).append(size)
                    print(f"  {block} {key}: {str(e).splitlines()[0]}", flush=True)
                else:
                    r.pop("family", None)
                    r["knobs"] = {n: knobs.to_dict()[n] for n in BLOCK_KNOBS[block]}
                    res[block][key] = r
                    print(f"  {block} {key}: " + ", ".join(f"{k} {r[k]:g}" for k in KEYS[:4])
                          + f"  ({r['seconds']:.0f} s yosys, {r['verilog_seconds']:.0f} s verilog)", flush=True)
                save()
        out["synth_wall_seconds_this_run"] = round(time.monotonic() - t_all, 1)
    save()
    if out["totals"] and args.plot:
        print("plot:", plot(out, Path(args.plot)))
    print("wrote", out_path)
    if args.markdown:
        print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
