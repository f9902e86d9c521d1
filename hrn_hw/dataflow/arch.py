"""Architecture files: what chip the dataflow runs on (YAML, validated, defaults filled).

Three kinds (docs/dataflow.md "Architectures"); the package ships one file of each in
`architectures/` (`rtl`, `fpga-pipelined`, `manycore`), and `--arch FILE` reads another:

- `rtl`: the generated top level, one sample in flight, the controller's phases in order.
- `fpga-pipelined`: the same engines joined by FIFOs, `in_flight` samples at once,
  `replicas` per engine, `fifo_depth` frames waiting before each engine.
- `manycore`: an R x C mesh of cores (MACs and element operations per cycle, SRAM) joined by
  routers (`router_delay` cycles per hop, `link_bytes_per_cycle`, XY routing); `placement`
  puts blocks on cores, `replicas` copies units.

Every number is checked (positive where a size or a rate), and unknown keys are refused.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from hrn_hw.errors import HrnError
from hrn_hw.rtl.knobs import RtlKnobs

BUILTIN = ("rtl", "fpga-pipelined", "manycore")
ENGINES = ("input", "hash", "normaliser", "projection", "residue", "head")   # and unit<u>
BLOCKS = ("hash", "normaliser", "projection", "residue", "head")    # many-core blocks, and unit<u>


class ArchError(HrnError):
    """An architecture file is missing, malformed or asks for something impossible."""


def _where(path: str, key: str) -> str:
    return f"{path}: {key}"


def _int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArchError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ArchError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def _mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArchError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _known(data: dict, allowed: tuple, what: str) -> None:
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise ArchError(f"{what}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def _engine_name(name, what: str, blocks=ENGINES) -> str:
    name = str(name)
    if name in blocks or (name.startswith("unit") and name[4:].isdigit()):
        return name
    raise ArchError(f"{what}: unknown engine {name!r} (one of {', '.join(blocks)}, unit<N>)")


def _replicas(value, what: str, blocks=ENGINES) -> dict:
    return {_engine_name(k, what, blocks): _int(v, f"{what}.{k}") for k, v in _mapping(value, what).items()}


def _knobs(value, what: str):
    if value is None:
        return None
    data = _mapping(value, what)
    try:
        return RtlKnobs.from_dict(data)
    except HrnError as exc:
        raise ArchError(f"{what}: {exc}") from None
    except TypeError as exc:
        raise ArchError(f"{what}: {exc}") from None


def _fifo_depth(value, what: str):
    """An int (every engine), 'unbounded', or a mapping engine -> int | 'unbounded'."""
    def one(v, w):
        return None if v == "unbounded" else _int(v, w)
    if isinstance(value, dict):
        return {_engine_name(k, what): one(v, f"{what}.{k}") for k, v in value.items()}
    return one(value, what)


def _cell(value, what: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ArchError(f"{what} must be a [row, column] pair, got {value!r}")
    return _int(value[0], f"{what}[0]", 0), _int(value[1], f"{what}[1]", 0)


def _placement(value, what: str) -> dict:
    """block -> list of cells (one per copy; a single [r, c] is one copy)."""
    out = {}
    for k, v in _mapping(value, what).items():
        name = _engine_name(k, what, BLOCKS)
        cells = v if isinstance(v, list) and v and isinstance(v[0], (list, tuple)) else [v]
        out[name] = [_cell(c, f"{what}.{k}") for c in cells]
    return out


COMMON = ("kind", "description", "clock_mhz")
SCHEMA = {
    "rtl": COMMON + ("knobs",),
    "fpga-pipelined": COMMON + ("knobs", "in_flight", "fifo_depth", "replicas"),
    "manycore": COMMON + ("mesh", "core", "noc", "in_flight", "io", "placement", "replicas"),
}
CORE_KEYS = ("macs_per_cycle", "ops_per_cycle", "sram_bytes", "task_overhead")
NOC_KEYS = ("router_delay", "link_bytes_per_cycle")


@dataclass
class Arch:
    """A validated architecture: `kind`, `name` and its settings (`data`, defaults filled)."""
    kind: str
    name: str
    data: dict
    path: str

    def __getitem__(self, key):
        return self.data[key]

    @property
    def clock_mhz(self) -> float:
        return self.data["clock_mhz"]

    def with_(self, **changes) -> "Arch":
        """A copy with some settings replaced, validated again (for sweeps and CLI overrides)."""
        raw = copy.deepcopy(self.data)
        raw.update(changes)
        return from_dict(plain(raw), self.name, self.path)


def plain(data: dict) -> dict:
    """`data` as the YAML a user would write (knobs as a mapping, tuples as lists)."""
    def lists(value):
        if isinstance(value, dict):
            return {k: lists(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [lists(v) for v in value]
        return value

    out = dict(data)
    out.pop("clock_note", None)
    if "fifo_depth" in out:
        depth = out["fifo_depth"]
        plain_depth = lambda v: "unbounded" if v is None else v     # noqa: E731
        out["fifo_depth"] = {k: plain_depth(v) for k, v in depth.items()} if isinstance(depth, dict) \
            else plain_depth(depth)
    if isinstance(out.get("knobs"), RtlKnobs):
        out["knobs"] = out["knobs"].to_dict()
    return lists(out)


def from_dict(raw: dict, name: str, path: str = "<dict>") -> Arch:
    """Validate an architecture's settings (`raw`, as read from YAML)."""
    if not isinstance(raw, dict):
        raise ArchError(f"{path}: an architecture file is a YAML mapping")
    kind = raw.get("kind")
    if kind not in SCHEMA:
        raise ArchError(f"{path}: kind must be one of {', '.join(SCHEMA)}, got {kind!r}")
    _known(raw, SCHEMA[kind], path)
    data = {"kind": kind, "description": str(raw.get("description", "")),
            "clock_mhz": _number(raw.get("clock_mhz", 1000.0 if kind == "manycore" else 200.0),
                                 _where(path, "clock_mhz")),
            "clock_note": "nominal"}
    if kind in ("rtl", "fpga-pipelined"):
        data["knobs"] = _knobs(raw.get("knobs"), _where(path, "knobs"))
    if kind == "fpga-pipelined":
        # "knobs": the RTL knobs' values (fpga.resolve_arch), the pipelined top level's own
        in_flight, replicas = raw.get("in_flight", 4), raw.get("replicas")
        data["in_flight"] = in_flight if in_flight == "knobs" else _int(in_flight, _where(path, "in_flight"))
        data["fifo_depth"] = _fifo_depth(raw.get("fifo_depth", "unbounded"), _where(path, "fifo_depth"))
        data["replicas"] = replicas if replicas in ("knobs", "auto") else _replicas(replicas, _where(path, "replicas"))
    if kind == "manycore":
        mesh = raw.get("mesh", [8, 8])
        if not isinstance(mesh, (list, tuple)) or len(mesh) != 2:
            raise ArchError(f"{path}: mesh must be [rows, columns], got {mesh!r}")
        data["mesh"] = (_int(mesh[0], _where(path, "mesh[0]")), _int(mesh[1], _where(path, "mesh[1]")))
        core = _mapping(raw.get("core"), _where(path, "core"))
        _known(core, CORE_KEYS, _where(path, "core"))
        data["core"] = {"macs_per_cycle": _int(core.get("macs_per_cycle", 16), _where(path, "core.macs_per_cycle")),
                        "ops_per_cycle": _int(core.get("ops_per_cycle", 16), _where(path, "core.ops_per_cycle")),
                        "sram_bytes": _int(core.get("sram_bytes", 256 * 1024), _where(path, "core.sram_bytes")),
                        "task_overhead": _int(core.get("task_overhead", 0), _where(path, "core.task_overhead"), 0)}
        noc = _mapping(raw.get("noc"), _where(path, "noc"))
        _known(noc, NOC_KEYS, _where(path, "noc"))
        data["noc"] = {"router_delay": _int(noc.get("router_delay", 2), _where(path, "noc.router_delay")),
                       "link_bytes_per_cycle": _int(noc.get("link_bytes_per_cycle", 16),
                                                    _where(path, "noc.link_bytes_per_cycle"))}
        data["in_flight"] = _int(raw.get("in_flight", 16), _where(path, "in_flight"))
        data["io"] = _cell(raw.get("io", [0, 0]), _where(path, "io"))
        data["placement"] = _placement(raw.get("placement"), _where(path, "placement"))
        data["replicas"] = _replicas(raw.get("replicas"), _where(path, "replicas"), BLOCKS)
        rows, cols = data["mesh"]
        cells = [("io", data["io"])] + [(k, c) for k, v in data["placement"].items() for c in v]
        for what, (r, c) in cells:
            if r >= rows or c >= cols:
                raise ArchError(f"{path}: {what} at [{r}, {c}] lies outside the {rows} x {cols} mesh")
    return Arch(kind, name, data, path)


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("hrn_hw.dataflow") / "architectures" / f"{name}.yaml"))


def load(spec: str) -> Arch:
    """A built-in architecture by name (`rtl`, `fpga-pipelined`, `manycore`) or a YAML file."""
    path = builtin_path(spec) if spec in BUILTIN else Path(spec)
    if not path.is_file():
        raise ArchError(f"--arch {spec}: no such file (built-in architectures: {', '.join(BUILTIN)})")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ArchError(f"{path}: not a YAML file ({exc.__class__.__name__})") from None
    return from_dict(raw, spec if spec in BUILTIN else path.stem, str(path))
