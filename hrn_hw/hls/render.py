"""Render a QuantModel as a self-contained HLS C++ project (OUT/hls).

Static building blocks come from the package's `hrn_hw/hls/templates/` (hash unit, normalisation,
projection comparator, conv unit) and hls4ml's `nnet_utils` (heads: nnet::dense, leaky_relu)
with Xilinx's Apache-2.0 `ap_types`; the model-specific files are generated here: types and
weights (`parameters.h`, `weights.h`), one function per reachable (unit, input map) call plus the
crossbar that dispatches to them and the heads (`hrn_top.cpp`), a C-simulation driver, a
Makefile for g++ and a Vitis `build_prj.tcl`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from string import Template
from types import SimpleNamespace

import numpy as np

from hrn_hw import layers as layer_kinds
from hrn_hw.export.ir import INPUT_FMT, ExportError, QuantModel
from hrn_hw.fixedpoint.ops import energy_width
from hrn_hw.hls.ctypes_ import acc_type, acc_width, array_init, check_conversion, log2_ceil, max_int, raw_c_type

TEMPLATES = Path(__file__).resolve().with_name("templates")     # package data
STATIC = ("hrn_fixed.h", "hrn_hash.h", "hrn_route.h", "hrn_unit.h")
ROUTE_T = "ap_int<8>"


def hls4ml_dir() -> Path:
    """hls4ml's Vivado template folder (nnet_utils, ap_types)."""
    try:
        import hls4ml
    except ImportError:
        raise ExportError("hls4ml is not installed (pip install hls4ml==1.3.0; `make setup` does it)") from None
    path = Path(hls4ml.__file__).resolve().parent / "templates" / "vivado"
    if not (path / "nnet_utils").is_dir() or not (path / "ap_types").is_dir():
        raise ExportError(f"{path}: hls4ml's nnet_utils/ap_types are missing")
    return path


def _alpha_t() -> str:
    return "ap_ufixed<16, 0>"


class _Renderer:
    def __init__(self, qm: QuantModel):
        self.qm = qm
        self.types: list[str] = []       # typedef lines of parameters.h
        self.weights: list[str] = []     # array definitions of weights.h
        self.funcs: list[str] = []       # call and head functions of hrn_top.cpp
        self.configs: list[str] = []     # hls4ml config structs
        self._act_cfgs: set[int] = set()

    # ---- shared types -------------------------------------------------------------------

    def global_types(self) -> dict:
        qm = self.qm
        raw_w = max([u.out_fmt.width for u in qm.units] + [INPUT_FMT.width + 1])
        map_max = max([math.prod(qm.input_shape)] + [math.prod(c["out_shape"]) for c in qm.reachable])
        fb, fh, fc, fr = qm.basis_fmt.frac, qm.h_fmt.frac, qm.coef_fmt.frac, qm.residue_fmt.frac
        proj_bound = max_int(qm.basis_fmt) * max_int(qm.h_fmt) * qm.s
        energy_bound = qm.m * max_int(qm.coef_fmt) ** 2
        diff_frac = fb + fc
        diff_bound = (max_int(qm.h_fmt) << (diff_frac - fh)) + qm.m * max_int(qm.basis_fmt) * max_int(qm.coef_fmt)
        emb_bound = qm.d * max_int(qm.residue_fmt)
        logit_w = max(l.out_fmt.width for h in qm.heads for l in h.layers[-1:])
        check_conversion(acc_width(proj_bound), fb + fh, qm.coef_fmt, "coef")
        check_conversion(acc_width(diff_bound), diff_frac, qm.residue_fmt, "residue")
        check_conversion(acc_width(emb_bound), fr, qm.emb_fmt, "embedding")
        t = {
            "input_t": "ap_ufixed<8, 0>",
            "raw_t": f"ap_int<{raw_w}>",
            "phi_t": "ap_int<32>",
            "h_t": qm.h_fmt.c_type(), "basis_t": qm.basis_fmt.c_type(), "coef_t": qm.coef_fmt.c_type(),
            "residue_t": qm.residue_fmt.c_type(), "emb_t": qm.emb_fmt.c_type(),
            "proj_acc_t": acc_type(fb + fh, proj_bound),
            "energy_t": acc_type(2 * fc, energy_bound, signed=False),
            "diff_t": acc_type(diff_frac, diff_bound),
            "emb_acc_t": acc_type(fr, emb_bound),
            "logit_raw_t": f"ap_int<{logit_w}>",
            "route_t": ROUTE_T,
            "alpha_t": _alpha_t(),
        }
        self.map_max = map_max
        return t

    # ---- units ----------------------------------------------------------------------------

    def unit_arrays(self) -> None:
        for u in self.qm.units:
            if not u.initialised:
                continue
            for j, layer in enumerate(u.layers):
                layer_kinds.of(layer).hls_arrays(layer, f"u{u.index}_l{j}", self)

    def act_cfg(self, n: int) -> str:
        if n not in self._act_cfgs:
            self._act_cfgs.add(n)
            self.configs.append(f"struct act_cfg_{n} : nnet::activ_config {{ static const unsigned n_in = {n}; }};")
        return f"act_cfg_{n}"

    def call_function(self, idx: int, call: dict) -> str:
        """One (unit, source, input shape) call: typed input, fold, layers, raw output."""
        qm = self.qm
        u = qm.units[call["unit"]]
        c, h, w = call["in_shape"]
        src = call["source"]
        if src == "input":
            in_t, in_fmt_w, in_frac, max_in = "input_t", 8, 8, 255
        else:
            f = qm.units[src].out_fmt
            in_t, in_fmt_w, in_frac, max_in = f"u{src}_out_t", f.width, f.frac, max_int(f)
        lines = [f"// unit {u.index} on {'the input' if src == 'input' else f'unit {src} output'} "
                 f"[{c}, {h}, {w}] -> {call['out_shape']}",
                 f"static void call_{idx}(const raw_t in[MAP_MAX], raw_t out[MAP_MAX]) {{",
                 f"    {in_t} x0[{c * h * w}];",
                 f"    for (int i = 0; i < {c * h * w}; i++) x0[i] = hrn::from_raw<{in_t}>(in[i]);"]
        cur, cur_t, cur_c = "x0", in_t, c
        if c != u.in_channels:
            groups = -(-c // u.in_channels)
            g = log2_ceil(groups)
            fw = in_fmt_w + 1 + g
            fold_t = f"ap_fixed<{fw}, {fw - in_frac}>"
            lines += [f"    {fold_t} x1[{u.in_channels * h * w}];",
                      f"    hrn::fold_channels<{c}, {u.in_channels}, {h * w}, {in_t}, {fold_t} >(x0, x1);"]
            cur, cur_t, cur_c, max_in = "x1", fold_t, u.in_channels, max_in * groups
        st = SimpleNamespace(cur=cur, cur_t=cur_t, cur_c=cur_c, h=h, w=w, in_frac=in_frac, in_fmt_w=in_fmt_w,
                             max_in=max_in, n=2)
        for j, layer in enumerate(u.layers):
            st.name = f"unit{u.index}.{j}"
            lines += layer_kinds.of(layer).hls(layer, f"u{u.index}_l{j}", st, self)
            st.n += 1
        cur, cur_c, h, w = st.cur, st.cur_c, st.h, st.w
        size = cur_c * h * w
        assert [cur_c, h, w] == list(call["out_shape"]), (call, cur_c, h, w)
        lines += [f"    for (int i = 0; i < {size}; i++) out[i] = hrn::to_raw<raw_t>({cur}[i]);", "}"]
        return "\n".join(lines)

    # ---- heads ----------------------------------------------------------------------------

    def head_function(self, head) -> str:
        qm = self.qm
        x_t, x_frac, x_max, n_in = "emb_t", qm.emb_fmt.frac, max_int(qm.emb_fmt), qm.s
        lines = [f"// head of task {head.task} ({head.name}, {len(head.classes)} classes)",
                 f"static void head_{head.task}(emb_t emb[S], logit_raw_t logits[MAX_CLASSES]) {{"]
        cur = "emb"
        for j, layer in enumerate(head.layers):
            tag = f"h{head.task}_l{j}"
            n_out = layer.weight.shape[1]
            frac = x_frac + layer.w_fmt.frac
            top = max(frac, layer.b_fmt.frac)
            bound = (x_max * int(np.abs(layer.weight).max() or 1) * n_in << (top - frac)) + \
                (int(np.abs(layer.bias).max()) << (top - layer.b_fmt.frac))
            check_conversion(acc_width(bound), top, layer.out_fmt, f"head{head.task}.{j}.out")
            self.types += [f"typedef {layer.w_fmt.c_type()} {tag}_w_t;", f"typedef {layer.b_fmt.c_type()} {tag}_b_t;",
                           f"typedef {layer.out_fmt.c_type()} {tag}_out_t;"]
            self.weights += [f"static const {raw_c_type(layer.w_fmt.width)} {tag.upper()}_W[{layer.weight.size}] = "
                             f"{array_init(layer.weight.reshape(-1))};",
                             f"static const {raw_c_type(layer.b_fmt.width)} {tag.upper()}_B[{n_out}] = {array_init(layer.bias)};"]
            self.configs.append(
                f"struct {tag}_cfg : nnet::dense_config {{\n"
                f"    typedef {tag}_b_t bias_t;\n    typedef {tag}_w_t weight_t;\n    typedef {acc_type(top, bound)} accum_t;\n"
                f"    static const unsigned n_in = {n_in};\n    static const unsigned n_out = {n_out};\n"
                f"    static const unsigned reuse_factor = 1;\n    static const unsigned multiplier_limit = {n_in * n_out};\n"
                f"    template <class data_T, class res_T, class CONFIG_T> using kernel = nnet::DenseLatency<data_T, res_T, CONFIG_T>;\n"
                f"    template <class x_T, class y_T> using product = nnet::product::mult<x_T, y_T>;\n}};")
            # nnet::dense takes typed weight arrays: reinterpret the integer ROM (no arithmetic).
            lines += [f"    {tag}_w_t w{j}[{layer.weight.size}];",
                      f"    {tag}_b_t b{j}[{n_out}];",
                      f"    for (int i = 0; i < {layer.weight.size}; i++) w{j}[i] = hrn::from_raw<{tag}_w_t>({tag.upper()}_W[i]);",
                      f"    for (int i = 0; i < {n_out}; i++) b{j}[i] = hrn::from_raw<{tag}_b_t>({tag.upper()}_B[i]);",
                      f"    {tag}_out_t z{j}[{n_out}];",
                      f"    nnet::dense<{x_t}, {tag}_out_t, {tag}_cfg>({cur}, z{j}, w{j}, b{j});"]
            cur = f"z{j}"
            if layer.act is not None:
                cfg = self.act_cfg(n_out)
                lines += [f"    {tag}_out_t a{j}[{n_out}];",
                          f"    nnet::leaky_relu<{tag}_out_t, alpha_t, {tag}_out_t, {cfg}>(z{j}, "
                          f"alpha_t({layer.act.alpha * 2.0 ** -layer.act.alpha_frac!r}), a{j});"]
                cur = f"a{j}"
            x_t, x_frac, x_max, n_in = f"{tag}_out_t", layer.out_fmt.frac, max_int(layer.out_fmt), n_out
        lines += [f"    for (int k = 0; k < MAX_CLASSES; k++) logits[k] = k < {len(head.classes)} ? "
                  f"hrn::to_raw<logit_raw_t>({cur}[k < {len(head.classes)} ? k : 0]) : logit_raw_t(0);", "}"]
        return "\n".join(lines)

    # ---- files ----------------------------------------------------------------------------

    def render(self) -> dict[str, str]:
        qm = self.qm
        gt = self.global_types()
        for u in qm.units:
            if u.initialised:
                self.types.append(f"typedef {u.out_fmt.c_type()} u{u.index}_out_t;")
        self.unit_arrays()
        calls = [self.call_function(i, c) for i, c in enumerate(qm.reachable)]
        heads = [self.head_function(h) for h in qm.heads]
        dispatch = []
        for i, c in enumerate(qm.reachable):
            src = -1 if c["source"] == "input" else c["source"]
            ci, hi, wi = c["in_shape"]
            co, ho, wo = c["out_shape"]
            dispatch.append(f"    if (unit == {c['unit']} && source == {src} && shape[0] == {ci} && shape[1] == {hi} "
                            f"&& shape[2] == {wi}) {{ call_{i}(in, out); shape[0] = {co}; shape[1] = {ho}; "
                            f"shape[2] = {wo}; return true; }}")
        head_cases = "\n".join(f"    case {h.task}: head_{h.task}(e, logits); break;" for h in qm.heads)
        subs = {
            "types": "\n".join(f"typedef {v} {k};" for k, v in gt.items()) + "\n" + "\n".join(self.types),
            "IN_C": qm.input_shape[0], "IN_H": qm.input_shape[1], "IN_W": qm.input_shape[2],
            "IN_N": math.prod(qm.input_shape), "S": qm.s, "MB": qm.m, "M": qm.num_units, "D": qm.d,
            "NORM_K": qm.norm_k, "NORM_EW": energy_width(qm.norm_k, qm.h_fmt), "STOP_T": f"{qm.stop_threshold}ULL", "N_TASKS": len(qm.heads),
            "MAX_CLASSES": qm.max_classes, "MAP_MAX": self.map_max,
            "seeds": ", ".join(f"{v}u" for v in qm.hash_seeds),
            "initialised": ", ".join("true" if u.initialised else "false" for u in qm.units),
            "bases": array_init(qm.bases), "basis_raw_t": raw_c_type(qm.basis_fmt.width),
            "weights": "\n\n".join(self.weights), "configs": "\n\n".join(self.configs),
            "calls": "\n\n".join(calls), "heads": "\n\n".join(heads), "dispatch": "\n".join(dispatch),
            "head_cases": head_cases, "source": qm.source.get("checkpoint", "?"),
        }
        out = {}
        for name in ("parameters.h", "weights.h", "hrn_top.h", "hrn_top.cpp", "csim_main.cpp",
                     "Makefile", "build_prj.tcl"):
            text = (TEMPLATES / f"{name}.tpl").read_text()
            out[name] = Template(text).substitute(subs)
        return out


def render_project(qm: QuantModel, out_dir: Path) -> list[Path]:
    """Write OUT/hls: generated sources, static headers, hls4ml's nnet_utils and ap_types."""
    if not TEMPLATES.is_dir():
        raise ExportError(f"{TEMPLATES}: HLS templates not found (run from a clone of hrn-hw)")
    vivado = hls4ml_dir()
    files = _Renderer(qm).render()
    fw = out_dir / "firmware"
    fw.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        dest = (out_dir if name in ("csim_main.cpp", "Makefile", "build_prj.tcl") else fw) / name
        dest.write_text(text)
        written.append(dest)
    for name in STATIC:
        shutil.copy2(TEMPLATES / name, fw / name)
    shutil.copytree(vivado / "nnet_utils", fw / "nnet_utils", dirs_exist_ok=True)
    shutil.copytree(vivado / "ap_types", fw / "ap_types", dirs_exist_ok=True)
    (out_dir / "THIRD_PARTY.md").write_text(
        "firmware/nnet_utils: hls4ml 1.3.0 (Apache-2.0, https://github.com/fastmachinelearning/hls4ml).\n"
        "firmware/ap_types: Xilinx/AMD arbitrary-precision types (Apache-2.0), as shipped by hls4ml.\n")
    return written
