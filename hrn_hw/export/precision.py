"""Fixed-point format choices: defaults, calibration rule and the `--precision FILE` override.

The file (YAML or JSON) maps tensor names to partial formats, e.g.

    default: {width: 16, map_width: 24, headroom: 1.25, rounding: rnd}
    h: {width: 16, frac: 14}
    unit0.0.out: {frac: 10}
    head0.2.out: {width: 12}

Names: h, basis, coef, residue, embedding, unit<i>.<j>.{weight,bias,out} and
head<t>.<j>.{weight,bias,out} (j: the layer's index in the export's layer list). A name given
with `frac` fixes the format; with only `width` or `rounding`, the range rule picks `frac`.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hrn_hw.errors import ConfigError
from hrn_hw.fixedpoint.fmt import ROUNDINGS, Fmt, fmt_for_range

# The routing datapath's multiplier inputs are 18 bits and unit output maps 24 bits, so every
# multiplication fits one Xilinx DSP48E1 (25 x 18): map x weight (24 x 16), basis x h and
# basis x coef (18 x 18). With 16-bit maps and h, routing agreed with float on only 96.6% of a
# Pairwise-MNIST task's test images (docs/fixed_point.md); weights, biases, the embedding and the
# heads stay 16-bit.
FIXED_DEFAULTS = {
    "h": Fmt(18, 16),          # |h_j| <= 1
    "basis": Fmt(18, 17),      # orthonormal rows: |b_j| <= 1 (exactly 1 saturates, counted)
    "coef": Fmt(18, 16),       # |c_i| <= ||h|| = 1
    "residue": Fmt(18, 16),    # |r_j| <= ||r|| <= 1
}
MAP_WIDTH = 24                 # unit conv outputs (feature maps)
NAME = re.compile(r"^(h|basis|coef|residue|embedding|(unit|head)\d+\.\d+\.(weight|bias|out))$")
KEYS = {"width", "frac", "rounding"}
DEFAULT_KEYS = {"width", "map_width", "headroom", "rounding"}


class Precision:
    """Per-tensor format choice: override if given, else the default rule."""

    def __init__(self, overrides: dict | None = None, width: int = 16, headroom: float = 1.25,
                 rounding: str = "rnd", map_width: int = MAP_WIDTH):
        self.width, self.headroom, self.rounding, self.map_width = width, headroom, rounding, map_width
        self.overrides = overrides or {}
        self.used: set[str] = set()

    @classmethod
    def from_file(cls, path: str | Path | None) -> "Precision":
        """Parse a precision file (None: all defaults). Raises ConfigError on any bad entry."""
        if path is None:
            return cls()
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read precision file ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON ({exc.__class__.__name__})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a precision file maps tensor names to formats")
        default = data.pop("default", {}) or {}
        if not isinstance(default, dict) or set(default) - DEFAULT_KEYS:
            raise ConfigError(f"{path}: 'default' takes only {', '.join(sorted(DEFAULT_KEYS))}")
        overrides = {}
        for name, spec in data.items():
            if not isinstance(name, str) or not NAME.match(name):
                raise ConfigError(f"{path}: unknown tensor name {name!r} (valid: h, basis, coef, residue, "
                                  "embedding, unit<i>.<j>.weight|bias|out, head<t>.<j>.weight|bias|out)")
            if not isinstance(spec, dict) or not spec or set(spec) - KEYS:
                raise ConfigError(f"{path}: {name}: give a mapping with some of {', '.join(sorted(KEYS))}")
            overrides[name] = spec
        prec = cls(overrides, default.get("width", 16), default.get("headroom", 1.25),
                   default.get("rounding", "rnd"), default.get("map_width", MAP_WIDTH))
        prec.path = path
        prec._check(path)
        return prec

    def _check(self, where) -> None:
        try:
            for key in ("width", "map_width"):
                value = getattr(self, key)
                if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 32:
                    raise ValueError(f"default {key} must be an integer in [2, 32], got {value!r}")
            if not isinstance(self.headroom, (int, float)) or not 1.0 <= self.headroom <= 16.0:
                raise ValueError(f"default headroom must be in [1, 16], got {self.headroom!r}")
            if self.rounding not in ROUNDINGS:
                raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}")
            for name, spec in self.overrides.items():
                self._make(name, spec, 1.0, False)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def _make(self, name: str, spec: dict, max_abs: float, weight: bool) -> Fmt:
        is_map = name.startswith("unit") and name.endswith(".out")
        width = spec.get("width", self.map_width if is_map else self.width)
        rounding = spec.get("rounding", self.rounding)
        if not isinstance(width, int) or isinstance(width, bool) or not 2 <= width <= 32:
            raise ValueError(f"{name}: width must be an integer in [2, 32], got {width!r}")
        if "frac" in spec:
            frac = spec["frac"]
            if not isinstance(frac, int) or isinstance(frac, bool) or abs(frac) > 40:
                raise ValueError(f"{name}: frac must be an integer in [-40, 40], got {frac!r}")
            return Fmt(width, frac, True, rounding)
        if rounding not in ROUNDINGS:
            raise ValueError(f"{name}: rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        return fmt_for_range(max_abs, width, 1.0 if weight else self.headroom, True, rounding)

    def fmt(self, name: str, max_abs: float, weight: bool = False) -> Fmt:
        """Format of a calibrated tensor: weights fit their exact maximum, data get headroom."""
        self.used.add(name)
        spec = self.overrides.get(name, {})
        try:
            return self._make(name, spec, float(max_abs), weight)
        except ValueError as exc:
            raise ConfigError(f"precision: {exc}") from None

    def fixed(self, name: str) -> Fmt:
        """Format of a tensor with a known bound (h, basis, coef, residue)."""
        self.used.add(name)
        base = FIXED_DEFAULTS[name]
        spec = self.overrides.get(name)
        if not spec:
            return base
        try:
            merged = {"width": base.width, "frac": base.frac, **spec}
            if "width" in spec and "frac" not in spec:
                merged["frac"] = base.frac + spec["width"] - base.width
            return self._make(name, merged, 1.0, True)
        except ValueError as exc:
            raise ConfigError(f"precision: {exc}") from None

    def unused(self) -> list[str]:
        """Override names that matched no tensor of the model."""
        return sorted(set(self.overrides) - self.used)
