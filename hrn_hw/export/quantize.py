"""Checkpoint -> QuantModel: fold BatchNorm, calibrate ranges, choose every fixed-point format.

Defaults (docs/fixed_point.md): 16-bit data path; weights and biases take the finest 16-bit
format holding their largest magnitude; feature maps, head activations and the embedding take
the finest 16-bit format holding 1.25x the largest magnitude seen on the calibration images;
h, coefficients and residues are Q2.14, bases Q1.15. `--precision FILE` overrides any of them.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import torch

from hrn_hw import layers as layer_kinds
from hrn_hw.errors import ConfigError
from hrn_hw.export.ir import DenseQ, ExportError, HeadQ, QuantModel, UnitQ
from hrn_hw.export.precision import Precision
from hrn_hw.export.shapes import hash_sources, reachable_calls
from hrn_hw.fixedpoint.fmt import SatCounter, quantize
from hrn_hw.fixedpoint.ops import energy_threshold, norm_shift
from hrn_hw.layers.activation import alpha_q
from hrn_hw.reference.hashing import index_hash
from hrn_hw.reference.hrn import HRN


def _fold_unit(index: int, unit) -> list:
    """Float layer list of one unit: each reference module's kind folds it (a conv takes the
    batchnorm after it; dropout leaves nothing). A module of no registered kind is an error."""
    mods, out, j = list(unit.layers), [], 0
    while j < len(mods):
        mod = mods[j]
        kind = getattr(type(mod), "layer_kind", None)
        if kind not in layer_kinds.kinds():
            raise ConfigError(f"unit {index}: layer {type(mod).__name__} is not supported by export")
        j += layer_kinds.get(kind).fold(mods, j, out, index)
    if not any(layer.kind == "conv" for layer in out):
        raise ConfigError(f"unit {index}: export needs at least one conv layer per unit")
    return out


MAX_MAGNITUDE = 2.0 ** 30


def _checked(name: str, values: np.ndarray) -> np.ndarray:
    """A float tensor about to be quantised: finite and of a magnitude fixed point can hold."""
    if not np.isfinite(values).all():
        raise ExportError(f"{name}: not finite after BatchNorm folding (a negative running_var, "
                          "or NaN/Inf in the checkpoint)")
    if values.size and float(np.abs(values).max()) >= MAX_MAGNITUDE:
        raise ExportError(f"{name}: magnitude {float(np.abs(values).max()):.3g} is too large for fixed point")
    return values


def _folded_forward(layers: list, in_channels: int, x: torch.Tensor, ranges: dict, prefix: str) -> None:
    """Run a unit's folded layers in float64 on its input maps, recording each conv's |max|."""
    from hrn_hw.reference.units import fold_channels

    y = fold_channels(x.double(), in_channels)
    for j, layer in enumerate(layers):
        y = layer_kinds.get(layer.kind).float_forward(layer, y, ranges, f"{prefix}.{j}")


@torch.no_grad()
def calibrate(model: HRN, folded: list, calib: list[tuple[int, np.ndarray]]) -> dict[str, float]:
    """Run the float model on each task's calibration images; ranges keyed by tensor name.

    Each unit's input maps are caught at the unit's boundary (the reference's internals may fuse
    layers) and re-run through the BN-folded layers in float64 to measure the conv outputs.
    """
    ranges: dict[str, float] = {}
    handles = []
    for i, (unit, layers) in enumerate(zip(model.units, folded)):
        def unit_hook(_mod, inputs, _out, layers=layers, i=i, unit=unit):
            _folded_forward(layers, unit.in_channels, inputs[0], ranges, f"unit{i}")
        handles.append(unit.register_forward_hook(unit_hook))
    for t, head in enumerate(model.heads):
        for j, lin in enumerate([*head.hidden, head.out]):
            def head_hook(_mod, _inp, out, key=f"head{t}.{j}.out"):
                if out.numel():
                    ranges[key] = max(ranges.get(key, 0.0), float(out.abs().max()))
            handles.append(lin.register_forward_hook(head_hook))
    emb = 0.0
    try:
        for task, x in calib:
            for start in range(0, len(x), 256):
                _, routing = model(torch.from_numpy(x[start:start + 256]), task)
                emb = max(emb, float(routing.embedding.abs().max()))
    finally:
        for h in handles:
            h.remove()
    ranges["embedding"] = emb
    return ranges


def quantize_model(model: HRN, tasks: list, calib: list[tuple[int, np.ndarray]], precision: Precision,
                   counter: SatCounter, source: dict | None = None) -> tuple[QuantModel, dict]:
    """Build the QuantModel; returns it and the calibration ranges (for the report)."""
    model.eval()
    folded = [_fold_unit(i, u) for i, u in enumerate(model.units)]
    for i, layers in enumerate(folded):
        for j, layer in enumerate(layers):
            layer_kinds.get(layer.kind).check_float(layer, f"unit{i}.{j}", _checked)
    ranges = calibrate(model, folded, calib)
    conv_seen = [v for k, v in ranges.items() if k.startswith("unit")]
    fallback = max(conv_seen) if conv_seen else 1.0
    units = []
    init = model.pool.initialised().tolist()
    for i, layers in enumerate(folded):
        q = SimpleNamespace(precision=precision, counter=counter, ranges=ranges, fallback=fallback)
        qlayers = [layer_kinds.get(layer.kind).quantize(layer, f"unit{i}.{j}", q) for j, layer in enumerate(layers)]
        units.append(UnitQ(i, model.units[i].in_channels, qlayers, bool(init[i])))
    heads = []
    for t, (head, spec) in enumerate(zip(model.heads, tasks)):
        lins = [*head.hidden, head.out]
        qlayers = []
        for j, lin in enumerate(lins):
            name = f"head{t}.{j}"
            w = _checked(f"{name}.weight", lin.weight.detach().double().numpy().T)
            b = _checked(f"{name}.bias", lin.bias.detach().double().numpy())
            w_fmt = precision.fmt(f"{name}.weight", np.abs(w).max(), weight=True)
            b_fmt = precision.fmt(f"{name}.bias", np.abs(b).max(), weight=True)
            out_fmt = precision.fmt(f"{name}.out", ranges.get(f"{name}.out", 1.0))
            act = alpha_q(head.slope) if j < len(lins) - 1 else None
            qlayers.append(DenseQ(quantize(w, w_fmt, counter, f"{name}.weight"), w_fmt,
                                  quantize(b, b_fmt, counter, f"{name}.bias"), b_fmt, out_fmt, act))
        heads.append(HeadQ(t, spec.name, list(spec.classes), qlayers))
    h_fmt, basis_fmt = precision.fixed("h"), precision.fixed("basis")
    coef_fmt, residue_fmt = precision.fixed("coef"), precision.fixed("residue")
    emb_fmt = precision.fmt("embedding", ranges["embedding"])
    if basis_fmt.frac + coef_fmt.frac < h_fmt.frac:
        raise ConfigError("precision: basis frac + coef frac must be at least h frac")
    bases = quantize(model.pool.bases.double().numpy(), basis_fmt, counter, "basis")
    p = model.cfg.hrn
    qm = QuantModel(tuple(int(v) for v in _input_shape(tasks)), model.s, p.basis_size, model.d,
                    float(p.tau_depth), energy_threshold(p.tau_depth, residue_fmt.frac), 0,
                    [int(v) for v in model.hash_seeds.tolist()], h_fmt, basis_fmt, coef_fmt, residue_fmt,
                    emb_fmt, bases, units, heads, source=source or {})
    qm.reachable = reachable_calls(qm)
    narrowed = _fit_hash_accumulators(qm)
    if narrowed:
        qm.source = {**qm.source, "narrowed_maps": narrowed}
    qm.norm_k = _norm_k(qm)
    return qm, ranges


PHI_BITS = 32          # the hash accumulator phi (docs/fixed_point.md): every layer holds it in 32 bits


def _bucket_counts(qm: QuantModel, hash_index: int, shape) -> np.ndarray:
    """How many map elements each bucket of hash `hash_index` sums, for a map of `shape`."""
    buckets, _ = index_hash(qm.hash_seeds[hash_index], math.prod(shape), qm.s)
    return np.bincount(buckets, minlength=qm.s)


def _fit_hash_accumulators(qm: QuantModel) -> dict:
    """Formats chosen so that phi fits its 32 bits: a unit whose output map could overflow a
    bucket's accumulator (bucket count x 2**(width - 1) >= 2**31) gets that many fewer fraction
    bits on its conv's output (same integer bits: no new saturation, a coarser LSB). Returns
    {unit: (old width, new width)} of the units it narrowed (the export report lists them)."""
    narrowed = {}
    for unit in qm.units:
        shapes = {tuple(c["out_shape"]) for c in qm.reachable if c["unit"] == unit.index}
        if not shapes:
            continue
        count = max(int(_bucket_counts(qm, unit.index + 1, shape).max()) for shape in shapes)
        fmt = unit.out_fmt
        width = fmt.width
        while width > 1 and count << (width - 1) >= 1 << (PHI_BITS - 1):
            width -= 1
        if width == fmt.width:
            continue
        cut = fmt.width - width
        if fmt.width - fmt.frac > width:
            raise ExportError(f"unit {unit.index}: its output map needs {fmt.width - fmt.frac} integer bits, but a "
                              f"hash bucket sums up to {count} of its elements: phi would exceed {PHI_BITS} bits; "
                              "use a larger hash_size or smaller maps")
        conv = next(i for i, layer in enumerate(unit.layers) if layer.kind == "conv")
        unit.layers[conv] = dataclasses.replace(unit.layers[conv], out_fmt=dataclasses.replace(
            unit.layers[conv].out_fmt, width=width, frac=fmt.frac - cut))
        narrowed[unit.index] = (fmt.width, width)
    return narrowed


def _input_shape(tasks: list) -> tuple:
    from hrn_hw.data import dataset_shape
    shapes = {tuple(dataset_shape(t.dataset))[:3] for t in tasks}
    if len(shapes) != 1:
        raise ExportError(f"tasks have different input shapes {sorted(shapes)}; one export takes one shape")
    return shapes.pop()


def _norm_k(qm: QuantModel) -> int:
    """One 1/sqrt shift for every hash source, from the largest possible hash energy."""
    bits = 1
    for src in hash_sources(qm):
        counts = _bucket_counts(qm, src["hash_index"], src["shape"]).astype(object)
        peak = 255 if src["hash_index"] == 0 else 1 << (src["width"] - 1)
        if int(counts.max()) * peak >= 1 << (PHI_BITS - 1):      # (_fit_hash_accumulators narrowed the maps)
            raise ExportError(f"hash accumulator of source {src} exceeds {PHI_BITS} bits; use narrower maps")
        bound = int(sum(int(c) * peak * int(c) * peak for c in counts))
        bits = max(bits, bound.bit_length())
    k = norm_shift(bits, qm.h_fmt)      # energies beyond 63 bits: exact in every layer (ops.energy_width)
    if k > 62:
        raise ExportError(f"1/sqrt shift {k} exceeds 62 bits; use narrower maps or h")
    return k
