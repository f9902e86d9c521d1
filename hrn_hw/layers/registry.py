"""The table of unit layer kinds and the base class every kind fills in (see hrn_hw/layers/__init__).

A kind is one `LayerKind` subclass, registered once under its config `type` with `@register`.
Its methods are the kind's definition in every layer of hrn-hw; a concern a kind has no part
in raises `LayerKindError` naming the kind and the concern (never a silent default).

This module imports nothing of hrn-hw but the errors, so every backend (reference, export,
golden model, HLS, RTL, dataflow) can import the registry without an import cycle; a kind
imports what a concern needs (torch, Amaranth, the HLS type helpers) inside that concern's
method.
"""

from __future__ import annotations

import math

from hrn_hw.errors import ConfigError, HrnError

REQUIRED = object()          # a parameter without default: the config must give it

_KINDS: dict[str, "LayerKind"] = {}


class LayerKindError(HrnError):
    """A layer kind that is not registered, or a registered one asked for a concern it has no
    part in (e.g. the IR of a batchnorm, which export folds away)."""


class LayerKind:
    """One unit layer kind. Class attributes:

    - `name`: the config's `type` (and the IR layer's `kind` where the kind has an IR layer);
    - `params`: parameter -> default (`REQUIRED`: must be given); the config takes exactly these;
    - `ir_kind`: the kind of the IR layer it becomes at export (None: none, folded or omitted);
    - `rtl_stage`: what the conv engine does with its IR layer: "conv", "act", "pool", or None
      (the engine cannot run a unit that has it);
    - `unit_stage`: its place in the layer order a unit may have (config validation: the one
      order the export, golden model, HLS and RTL implement): 0 first (only there), then
      increasing, at most one kind of each stage; `unit_anywhere`: it may stand anywhere after
      the first layer instead (dropout).

    Methods, by concern (the defaults raise LayerKindError):

    config       check(spec, where) -> dict of the parameters (defaults filled, values checked)
    reference    module(p, channels) -> (nn.Module, out channels); plain_module(p, channels)
                 the same layer as a standard torch.nn module (the vanilla-CNN baseline)
    export       fold(mods, j, folded, unit) -> modules consumed (float layers appended);
                 float_forward(fl, y, ranges, key); check_float(fl, name, checked);
                 quantize(fl, name, q) -> the IR layer
    IR           to_manifest(layer) -> dict; from_manifest(d, arrays, key) -> layer;
                 arrays(layer) -> {suffix: (integers, Fmt)}; tensor_formats(layer) -> [(suffix, Fmt)]
    shape/format out_shape(layer, c, h, w) -> (c, h, w); out_fmt(layer, fmt) -> Fmt or None
    golden       golden(layer, x, frac, fmt, sat, name) -> (x, frac, fmt)
    HLS          hls_arrays(layer, tag, r); hls(layer, tag, st, r) -> C++ lines
    RTL          rtl_* (by stage, see the stage's base class); rtl_out_reads(layer)
    cycles/ops   work(layer, c, h, w) -> (MACs, element ops) of the dataflow's many-core model
    """

    name: str = ""
    params: dict = {}
    ir_kind: str | None = None
    rtl_stage: str | None = None
    unit_stage: int | None = None
    unit_anywhere: bool = False

    def _no(self, concern: str):
        raise LayerKindError(f"unit layer type {self.name!r} has no {concern}")

    # ---- config --------------------------------------------------------------------------

    def check(self, spec: dict, where: str) -> dict:
        """Parameter values of a spec whose keys were checked (defaults filled)."""
        return {}

    # ---- reference (PyTorch) -------------------------------------------------------------

    def module(self, p: dict, channels: int):
        self._no("reference module")

    def plain_module(self, p: dict, channels: int):
        self._no("plain torch module")

    # ---- export: reference module -> float layers -> IR -----------------------------------

    def fold(self, mods: list, j: int, folded: list, unit: int) -> int:
        self._no("export (fold)")

    def float_forward(self, fl, y, ranges: dict, key: str):
        self._no("float forward")

    def check_float(self, fl, name: str, checked) -> None:
        return None

    def quantize(self, fl, name: str, q):
        self._no("quantisation")

    # ---- IR and manifest -------------------------------------------------------------------

    def to_manifest(self, layer) -> dict:
        self._no("IR layer")

    def from_manifest(self, d: dict, arrays: dict, key: str):
        self._no("IR layer")

    def arrays(self, layer) -> dict:
        """Integer arrays the layer stores (weights.npz, ROMs): {suffix: (array, Fmt)}."""
        return {}

    def tensor_formats(self, layer) -> list:
        """(suffix, Fmt) of its named tensors (report, precision names)."""
        return []

    # ---- shape and format rules ------------------------------------------------------------

    def out_shape(self, layer, c: int, h: int, w: int) -> tuple[int, int, int]:
        self._no("shape rule")

    def out_fmt(self, layer, fmt):
        """The output's format given the input's (None: not known yet, before any conv)."""
        return fmt

    # ---- golden model ----------------------------------------------------------------------

    def golden(self, layer, x, frac: int, fmt, sat, name: str):
        self._no("golden operation")

    # ---- HLS C++ ---------------------------------------------------------------------------

    def hls_arrays(self, layer, tag: str, r) -> None:
        return None

    def hls(self, layer, tag: str, st, r) -> list:
        self._no("HLS emitter")

    # ---- RTL conv engine and dataflow ------------------------------------------------------

    def rtl_out_reads(self, layer) -> int:
        """Reads of the engine's output memory per output word (OUT phase)."""
        return 1

    def work(self, layer, c: int, h: int, w: int) -> tuple[int, int]:
        self._no("operation count")


def unit_stages() -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """The unit layer order: (kinds of each `unit_stage` in increasing order, the kinds that
    may stand anywhere after the first layer)."""
    stages: dict[int, list] = {}
    for kind in _KINDS.values():
        if kind.unit_stage is not None:
            stages.setdefault(kind.unit_stage, []).append(kind.name)
    return (tuple(tuple(stages[s]) for s in sorted(stages)),
            tuple(k.name for k in _KINDS.values() if k.unit_anywhere))


def register(cls):
    """Class decorator: register one instance of a LayerKind subclass under its `name`."""
    kind = cls()
    if not kind.name or kind.name in _KINDS:
        raise ValueError(f"layer kind {kind.name!r}: empty or registered twice")
    _KINDS[kind.name] = kind
    return cls


def kinds() -> tuple[str, ...]:
    """The registered kinds' config types, in registration order."""
    return tuple(_KINDS)


def get(kind) -> LayerKind:
    """The registered kind `kind` (LayerKindError if there is none)."""
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise LayerKindError(f"unknown unit layer type {kind!r}; supported: {', '.join(_KINDS)}") from None


def of(layer) -> LayerKind:
    """The kind of an IR layer (its `kind` attribute) or of a reference module (its class's
    `layer_kind`)."""
    name = getattr(layer, "kind", None)
    if name is None:
        name = getattr(type(layer), "layer_kind", None)
    if name is None:
        raise LayerKindError(f"{type(layer).__name__} is not a unit layer")
    return get(name)


# ---- shared rules -------------------------------------------------------------------------

def window_out_hw(h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """Output size of a conv/pool window: zero padding, then bottom/right up to the kernel."""
    hp, wp = max(h + 2 * padding, kernel), max(w + 2 * padding, kernel)
    return (hp - kernel) // stride + 1, (wp - kernel) // stride + 1


# ---- config parameters --------------------------------------------------------------------

def int_param(spec: dict, key: str, default=None, minimum: int = 1, where: str = "unit layer") -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where}: {spec['type']} {key} must be {what}, got {value!r}")
    return value


def number_param(spec: dict, key: str, default: float, lo: float, hi: float, hi_open: bool,
                 where: str) -> float:
    value = spec.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ConfigError(f"{where}: {spec['type']} {key} must be a number in [{lo:g}, {hi:g}"
                          f"{')' if hi_open else ']'}, got {value!r}")
    return float(value)


def validate_spec(spec, where: str = "unit layer") -> dict:
    """Check one layer's config dict; returns its parameters with the defaults filled in.

    Raises ConfigError (one line, prefixed by `where`) for a non-mapping, a missing or unsupported
    type, a parameter the type does not take, a missing required one, or a bad value.
    """
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{where}: a unit layer must be a mapping with a 'type', got {spec!r}"[:300])
    name = spec["type"]
    if not isinstance(name, str) or name not in _KINDS:
        raise ConfigError(f"{where}: unsupported unit layer type {name!r}; supported: {', '.join(_KINDS)}")
    kind = _KINDS[name]
    allowed = kind.params
    unknown = sorted(str(k) for k in spec if k != "type" and k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: {name} layer does not take {', '.join(unknown)}; allowed: "
                          f"{', '.join(['type', *allowed])}")
    missing = [k for k, d in allowed.items() if d is REQUIRED and k not in spec]
    if missing:
        raise ConfigError(f"{where}: {name} layer needs {', '.join(missing)}")
    return {"type": name, **kind.check(spec, where)}
