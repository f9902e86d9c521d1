"""Parallelism knobs of the generated RTL (export options; defaults in docs/rtl.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from hrn_hw.errors import HrnError


REPLICABLE = ("hash", "normaliser", "projection")      # and unit<u>; see _replica_pairs


AUTO = "auto"
NOMINAL_CLOCK_MHZ = 200.0       # the clock a cycle count is read at where no part was placed and routed


def _replica_pairs(value):
    """Replicas as sorted (engine, copies) pairs from a dict, pairs or "name=n,name=n"; "auto"
    (chosen from a workload by `hrn_hw.rtl.latency.auto_replicas`) stays as it is."""
    if value == AUTO:
        return AUTO
    if isinstance(value, str):
        try:
            value = dict((k.strip(), int(v)) for k, v in (item.split("=") for item in value.split(",") if item.strip()))
        except ValueError:
            raise HrnError(f"RTL knob replicas: {value!r} is not of the form engine=copies,engine=copies") from None
    if isinstance(value, dict):
        value = value.items()
    try:
        pairs = sorted((str(k), v) for k, v in value)
    except (TypeError, ValueError):
        raise HrnError(f"RTL knob replicas must map engines to copies, got {value!r}") from None
    for name, copies in pairs:
        if not (name in REPLICABLE or (name.startswith("unit") and name[4:].isdigit())):
            raise HrnError(f"RTL knob replicas: engine {name!r} cannot be replicated (one of "
                           f"{', '.join(REPLICABLE)}, unit<N>; the input port, the residue block, which holds "
                           "the embedding accumulators, and the head, which reads them, have one copy)")
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise HrnError(f"RTL knob replicas: {name} copies must be a positive integer, got {copies!r}")
    return tuple((k, v) for k, v in pairs if v > 1)


def knob_flags() -> list[tuple[str, str, str]]:
    """(knob name, command-line flag, help) of every RTL knob, in RtlKnobs' order: the one list
    `hrn-hw export` builds its knob options from."""
    out = []
    for f in fields(RtlKnobs):
        default = "" if f.default is None else f" (default {f.default})"
        out.append((f.name, "--" + f.name.replace("_", "-"), f"RTL: {f.metadata['help']}{default}"))
    return out


@dataclass(frozen=True)
class RtlKnobs:
    """words: words per beat on every stream of the top level (pixels, maps, phi, h, residue,
    embedding; docs/rtl.md "Multi-word streams"). conv_lanes: output channels each conv engine
    computes in parallel (None: all of the unit's out channels; larger values are capped per
    unit). pixel_lanes: output pixels each conv engine computes in parallel. head_lanes: MAC
    lanes (output neurons at once) of the head engine. root_bits: quotient / root bits per
    cycle of the normaliser's division and square root. in_flight: samples the top level holds
    at once (1: `HrnTop`, one sample at a time, blocks chained; more: `PipelinedTop`, engines
    joined by queues, docs/rtl.md "Samples in flight"). replicas: copies of engines of the
    pipelined top level, as sorted (engine, copies) pairs (`{"hash": 2}` in dicts and JSON), or
    "auto": chosen from the golden routes at export (`hrn_hw.rtl.latency.auto_replicas`). The
    defaults (docs/rtl.md "Knobs", "Samples in flight") put the Pairwise-MNIST paper model
    (runs/paper) at a median initiation interval of 245 cycles (1,518 cycles per sample with
    in_flight 1)."""
    words: int = field(default=8, metadata={"help": "words per beat on every stream"})
    conv_lanes: int | None = field(default=None, metadata={
        "help": "output channels each conv engine computes per cycle (default: all of the unit's)"})
    pixel_lanes: int = field(default=8, metadata={"help": "output pixels each conv engine computes per cycle"})
    head_lanes: int = field(default=20, metadata={"help": "MAC lanes of the head engine"})
    root_bits: int = field(default=4, metadata={"help": "bits per cycle of the normaliser's division and square root"})
    in_flight: int = field(default=8, metadata={
        "help": "samples the top level holds at once (>= 2: the pipelined top level, docs/rtl.md \"Samples in flight\")"})
    replicas: tuple | str = field(default=AUTO, metadata={
        "help": "pipelined top level: engine copies, e.g. hash=2,normaliser=2,unit3=2, or auto (chosen at export)"})

    def __post_init__(self):
        object.__setattr__(self, "replicas", _replica_pairs(self.replicas))
        if self.replicas not in ((), AUTO) and self.in_flight < 2:
            raise HrnError("RTL knob replicas needs in_flight >= 2 (the pipelined top level)")
        for f in fields(self):
            value = getattr(self, f.name)
            if (value is None and f.name == "conv_lanes") or f.name == "replicas":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HrnError(f"RTL knob {f.name} must be a positive integer, got {value!r}")
        if self.words & (self.words - 1):
            raise HrnError(f"RTL knob words must be a power of two (the hash unit's banks), got {self.words}")

    def lanes_of(self, unit) -> int:
        """Conv lanes of one unit (UnitQ): the knob, capped at its out channels."""
        out_channels = unit.layers[0].out_channels
        return out_channels if self.conv_lanes is None else min(self.conv_lanes, out_channels)

    def copies(self, engine: str) -> int:
        """Copies of engine `engine` of the pipelined top level (1 unless replicated)."""
        if self.replicas == AUTO:
            raise ValueError("replicas 'auto' not resolved (hrn_hw.rtl.latency.resolve_knobs)")
        return dict(self.replicas).get(engine, 1)

    @property
    def pipelined(self) -> bool:
        """Whether the knobs ask for the pipelined top level (in_flight >= 2)."""
        return self.in_flight >= 2

    def to_dict(self) -> dict:
        out = asdict(self)
        out["replicas"] = self.replicas if self.replicas == AUTO else dict(self.replicas)
        return out

    def with_(self, **changes) -> "RtlKnobs":
        """A copy with the given knobs replaced (None values are ignored)."""
        return RtlKnobs(**{**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    @classmethod
    def from_record(cls, data: dict | None) -> "RtlKnobs":
        """The knobs an RTL was generated with (rtl.json's "knobs"): a record without
        in_flight predates the pipelined top level, so its RTL holds one sample at a time."""
        data = dict(data or {})
        data.setdefault("in_flight", 1)
        data.setdefault("replicas", {})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RtlKnobs":
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise HrnError(f"unknown RTL knob(s): {', '.join(sorted(unknown))} (an export of an older "
                           "hrn-hw: export again)")
        return cls(**data)


# Knob presets for named parts (`hrn-hw export --preset NAME`; explicit knob options override
# a preset's values). docs/rtl.md "Knobs" gives each preset's measured fit and latency.
PRESETS = {
    # Lattice ECP5-85F (LFE5U-85F: 83,640 LUT4, 156 MULT18X18D, 208 DP16KD), re-tuned for throughput
    # (issue 16): the pipelined top level with 8 samples in flight and replicas chosen from the
    # golden routes (the paper model: a second unit-3 engine), one word per beat (the two-word
    # design of issue 15 did not route on this part), 4 output channels and one output pixel per
    # conv cycle, 12 head lanes (each lane's weights of the paper heads fit 8 DP16KD slices), 2
    # root bits a cycle. docs/rtl.md "Samples in flight" gives the choice and its measurements.
    "ecp5-85f": RtlKnobs(words=1, conv_lanes=4, pixel_lanes=1, head_lanes=12, root_bits=2, in_flight=8,
                         replicas=AUTO),
}


def preset(name: str | None) -> RtlKnobs:
    """The knobs of preset `name` (None: the defaults, the large-part design)."""
    if name is None:
        return RtlKnobs()
    if name not in PRESETS:
        raise HrnError(f"unknown preset {name!r}: one of {', '.join(PRESETS)}")
    return PRESETS[name]
