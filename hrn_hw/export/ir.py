"""The quantised model (IR) every backend reads: integers, formats, seeds, reachable shapes.

`QuantModel.save(dir)` writes `manifest.json` (everything but the arrays) and `weights.npz`
(integer arrays); `QuantModel.load(dir)` reads them back and checks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrn_hw import layers as layer_kinds
from hrn_hw.errors import ExportError
from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.layers.activation import ActQ
from hrn_hw.layers.conv import ConvQ
from hrn_hw.layers.pool import PoolQ

MANIFEST_FORMAT = "hrn-hw/export"
MANIFEST_VERSION = 1
INPUT_FMT = Fmt(8, 8, signed=False)      # raw pixel p read as p / 256, exact

# The unit layers' IR classes are defined with their kinds (hrn_hw.layers); a unit layer's
# manifest entry and arrays come from its kind.
__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "INPUT_FMT", "ExportError", "ActQ", "ConvQ", "PoolQ", "UnitQ",
           "DenseQ", "HeadQ", "QuantModel"]


@dataclass
class UnitQ:
    index: int
    in_channels: int
    layers: list
    initialised: bool

    @property
    def out_fmt(self) -> Fmt:
        """The output map's format: each layer's format rule in turn (a conv sets it)."""
        fmt = None
        for layer in self.layers:
            fmt = layer_kinds.of(layer).out_fmt(layer, fmt)
        if fmt is None:
            raise ExportError(f"unit {self.index}: no layer sets the output format (a unit needs a conv)")
        return fmt


@dataclass
class DenseQ:
    """Linear layer, weight [n_in, n_out] (hls4ml order), optional LeakyReLU after it."""

    weight: np.ndarray
    w_fmt: Fmt
    bias: np.ndarray
    b_fmt: Fmt
    out_fmt: Fmt
    act: ActQ | None


@dataclass
class HeadQ:
    task: int
    name: str
    classes: list
    layers: list


@dataclass
class QuantModel:
    """Everything the golden model, HLS and RTL need, in integers and formats."""

    input_shape: tuple
    s: int
    m: int
    d: int
    tau_depth: float
    stop_threshold: int          # stop iff sum r^2 (frac 2 * residue frac) < this
    norm_k: int                  # inv = floor(2**norm_k / sqrt(E))
    hash_seeds: list
    h_fmt: Fmt
    basis_fmt: Fmt
    coef_fmt: Fmt
    residue_fmt: Fmt
    emb_fmt: Fmt
    bases: np.ndarray            # [M, m, s]
    units: list
    heads: list
    reachable: list = field(default_factory=list)   # dicts: unit, sources, in_shape, in_frac, ...
    source: dict = field(default_factory=dict)      # checkpoint path, scenario, config name

    @property
    def num_units(self) -> int:
        return len(self.units)

    @property
    def initialised(self) -> np.ndarray:
        return np.array([u.initialised for u in self.units], dtype=bool)

    @property
    def max_classes(self) -> int:
        return max(len(h.classes) for h in self.heads)

    # ---- serialisation -------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"bases": self.bases}
        for u in self.units:
            for j, layer in enumerate(u.layers):
                for suffix, (array, _) in layer_kinds.of(layer).arrays(layer).items():
                    out[f"unit{u.index}.{j}.{suffix}"] = array
        for h in self.heads:
            for j, layer in enumerate(h.layers):
                out[f"head{h.task}.{j}.weight"] = layer.weight
                out[f"head{h.task}.{j}.bias"] = layer.bias
        return out

    def manifest(self) -> dict:
        def layer_dict(layer) -> dict:
            return layer_kinds.of(layer).to_manifest(layer)

        return {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
            "source": self.source,
            "input": {"shape": list(self.input_shape), "format": INPUT_FMT.to_dict()},
            "hrn": {"hash_size": self.s, "basis_size": self.m, "depth": self.d, "num_units": self.num_units,
                    "tau_depth": self.tau_depth, "stop_threshold": self.stop_threshold,
                    "norm_k": self.norm_k},
            "hash_seeds": [int(v) for v in self.hash_seeds],
            "formats": {"h": self.h_fmt.to_dict(), "basis": self.basis_fmt.to_dict(),
                        "coef": self.coef_fmt.to_dict(), "residue": self.residue_fmt.to_dict(),
                        "embedding": self.emb_fmt.to_dict()},
            "basis_counts": [int(np.count_nonzero(np.abs(self.bases[u]).sum(1))) for u in range(self.num_units)],
            "units": [{"index": u.index, "in_channels": u.in_channels, "initialised": u.initialised,
                       "layers": [layer_dict(l) for l in u.layers]} for u in self.units],
            "heads": [{"task": h.task, "name": h.name, "classes": list(h.classes),
                       "layers": [{"in": int(l.weight.shape[0]), "out": int(l.weight.shape[1]),
                                   "weight_format": l.w_fmt.to_dict(), "bias_format": l.b_fmt.to_dict(),
                                   "out_format": l.out_fmt.to_dict(),
                                   "activation": None if l.act is None else layer_kinds.of(l.act).to_manifest(l.act)}
                                  for l in h.layers]} for h in self.heads],
            "reachable": self.reachable,
        }

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").write_text(json.dumps(self.manifest(), indent=1) + "\n")
        np.savez(directory / "weights.npz", **self.arrays())

    @classmethod
    def load(cls, directory: str | Path) -> "QuantModel":
        """Read an export's manifest.json and weights.npz (ExportError if missing or foreign)."""
        directory = Path(directory)
        mpath, wpath = directory / "manifest.json", directory / "weights.npz"
        if not mpath.is_file() or not wpath.is_file():
            raise ExportError(f"{directory}: not an hrn-hw export (manifest.json or weights.npz missing)")
        try:
            man = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"{mpath}: unreadable manifest ({exc.__class__.__name__})") from None
        if not isinstance(man, dict) or man.get("format") != MANIFEST_FORMAT:
            raise ExportError(f"{mpath}: not an hrn-hw export manifest")
        if man.get("version") != MANIFEST_VERSION:
            raise ExportError(f"{mpath}: manifest version {man.get('version')!r} is not supported "
                              f"(this hrn-hw reads {MANIFEST_VERSION})")
        try:
            with np.load(wpath, allow_pickle=False) as z:
                arr = {k: z[k].astype(np.int64) for k in z.files}
            return cls._from_manifest(man, arr)
        except ExportError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ExportError(f"{directory}: inconsistent export ({exc.__class__.__name__}: "
                              f"{' '.join(str(exc).split())[:160]})") from None

    @classmethod
    def _from_manifest(cls, man: dict, arr: dict) -> "QuantModel":
        F = Fmt.from_dict
        units = []
        for u in man["units"]:
            layers = []
            for j, l in enumerate(u["layers"]):
                kind = l["type"]
                if kind not in layer_kinds.kinds() or layer_kinds.get(kind).ir_kind != kind:
                    raise ExportError(f"manifest: unknown unit layer type {kind!r}")
                layers.append(layer_kinds.get(kind).from_manifest(l, arr, f"unit{u['index']}.{j}"))
            units.append(UnitQ(int(u["index"]), int(u["in_channels"]), layers, bool(u["initialised"])))
        heads = []
        for h in man["heads"]:
            layers = []
            for j, l in enumerate(h["layers"]):
                key = f"head{h['task']}.{j}"
                act = l["activation"]
                layers.append(DenseQ(arr[f"{key}.weight"], F(l["weight_format"]), arr[f"{key}.bias"],
                                     F(l["bias_format"]), F(l["out_format"]),
                                     None if act is None else layer_kinds.get("leaky_relu").from_manifest(act, arr, key)))
            heads.append(HeadQ(int(h["task"]), str(h["name"]), list(h["classes"]), layers))
        hp, fm = man["hrn"], man["formats"]
        bases = arr["bases"]
        if bases.shape != (hp["num_units"], hp["basis_size"], hp["hash_size"]):
            raise ExportError(f"bases have shape {bases.shape}, manifest implies "
                              f"{(hp['num_units'], hp['basis_size'], hp['hash_size'])}")
        return cls(tuple(man["input"]["shape"]), hp["hash_size"], hp["basis_size"], hp["depth"],
                   float(hp["tau_depth"]), int(hp["stop_threshold"]), int(hp["norm_k"]),
                   [int(v) for v in man["hash_seeds"]], F(fm["h"]), F(fm["basis"]), F(fm["coef"]),
                   F(fm["residue"]), F(fm["embedding"]), bases, units, heads, man.get("reachable", []),
                   man.get("source", {}))
