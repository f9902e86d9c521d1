"""OUT/report.md: formats, float vs fixed accuracy, routing agreement, saturation counts."""

from __future__ import annotations

from hrn_hw import layers as layer_kinds
from hrn_hw.export.ir import INPUT_FMT, QuantModel


def _fmt_row(name: str, fmt, sats: int) -> str:
    return (f"| {name} | {'s' if fmt.signed else 'u'}{fmt.width} | {fmt.frac} | {fmt.c_type()} | {fmt.rounding} "
            f"| sat | {sats} |")


def formats_table(qm: QuantModel, sat: dict) -> list[str]:
    rows = ["| tensor | bits | frac | C++ type | rounding | overflow | saturations |",
            "|---|---|---|---|---|---|---|",
            _fmt_row("input (pixel / 256)", INPUT_FMT, 0)]
    for name, fmt in (("h", qm.h_fmt), ("basis", qm.basis_fmt), ("coef", qm.coef_fmt),
                      ("residue", qm.residue_fmt), ("embedding", qm.emb_fmt)):
        rows.append(_fmt_row(name, fmt, sat.get(name, 0)))
    for u in qm.units:
        for j, l in enumerate(u.layers):
            for suffix, fmt in layer_kinds.of(l).tensor_formats(l):
                key = f"unit{u.index}.{j}.{suffix}"
                rows.append(_fmt_row(key, fmt, sat.get(key, 0)))
    for h in qm.heads:
        for j, l in enumerate(h.layers):
            key = f"head{h.task}.{j}"
            rows.append(_fmt_row(f"{key}.weight", l.w_fmt, sat.get(f"{key}.weight", 0)))
            rows.append(_fmt_row(f"{key}.bias", l.b_fmt, sat.get(f"{key}.bias", 0)))
            rows.append(_fmt_row(f"{key}.out", l.out_fmt, sat.get(f"{key}.out", 0)))
    return rows


def write_report(path, qm: QuantModel, summary: dict) -> None:
    """Render the export summary as Markdown."""
    lines = ["# hrn-hw export report", "",
             f"Model: `{summary['model']}` ({summary['config']}, trained in the {summary['profile']} profile), exported by hrn-hw {summary['version']} "
             f"in {summary['export_seconds']:.1f} s.", "",
             "## Float (PyTorch reference) vs fixed point (golden model)", "",
             f"Test images of every task ({summary['eval_note']}). Route agreement: the fraction of samples "
             "whose whole route (unit per step) is the same.", "",
             "| task | images | float acc % | fixed acc % | drop (points) | route agreement % |",
             "|---|---|---|---|---|---|"]
    for t in summary["tasks"]:
        lines.append(f"| {t['name']} | {t['samples']} | {100 * t['float_accuracy']:.2f} | "
                     f"{100 * t['fixed_accuracy']:.2f} | {100 * (t['float_accuracy'] - t['fixed_accuracy']):+.2f} | "
                     f"{100 * t['route_agreement']:.2f} |")
    sat = summary["saturations"]
    lines += ["", "## Overflow and saturation", "",
              f"No arithmetic wraps: accumulators are exact (widths derived from bounds). Saturation events "
              f"(values clamped to a format's range): {sum(sat.values())} in all, during quantisation of "
              f"weights and on the evaluation images above.", "",
              *formats_table(qm, sat), "",
              "## Routing hardware", "",
              f"- hash size s = {qm.s}, basis size m = {qm.m}, depth d = {qm.d}, units M = {qm.num_units} "
              f"({int(qm.initialised.sum())} initialised)",
              f"- normalisation: inv = floor(2^{qm.norm_k} / sqrt(E)) = isqrt(floor(2^{2 * qm.norm_k} / E)); "
              f"h = round(phi * inv / 2^{qm.norm_k - qm.h_fmt.frac})",
              *[f"- unit {u}'s output map narrowed from {a} to {b} bits so that a hash bucket's sum fits phi's "
                "32 bits (docs/fixed_point.md)" for u, (a, b) in qm.source.get("narrowed_maps", {}).items()],
              f"- early stop: sum r^2 < {qm.stop_threshold} (raw, frac {2 * qm.residue_fmt.frac}), "
              f"i.e. ||r|| < tau_d = {qm.tau_depth:g}",
              f"- reachable unit calls (crossbar entries): {len(qm.reachable)}", "",
              "| unit | input from | input shape | output shape |", "|---|---|---|---|"]
    for c in qm.reachable:
        src = "image" if c["source"] == "input" else f"unit {c['source']}"
        lines.append(f"| {c['unit']} | {src} | {c['in_shape']} | {c['out_shape']} |")
    lines += ["", "## Golden vectors", "",
              f"{summary['golden_samples']} images ({summary['golden_per_task']} per task) in `golden/vectors.npz`; "
              "check the C simulation with `hrn-hw verify OUT --against csim`.", ""]
    if summary.get("rtl"):
        from hrn_hw.rtl.report import rtl_report_lines

        lines += rtl_report_lines(summary["rtl"])
    if summary.get("precision_unused"):
        lines += [f"Precision overrides that matched no tensor: {', '.join(summary['precision_unused'])}", ""]
    path.write_text("\n".join(lines))
