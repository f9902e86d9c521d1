"""Parallelism knobs of the generated RTL (export options; defaults in docs/rtl.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from hrn_hw.errors import HrnError


@dataclass(frozen=True)
class RtlKnobs:
    """words: words per beat on every stream of the top level (pixels, maps, phi, h, residue,
    embedding; docs/rtl.md "Multi-word streams"). conv_lanes: output channels each conv engine
    computes in parallel (None: all of the unit's out channels; larger values are capped per
    unit). pixel_lanes: output pixels each conv engine computes in parallel. head_lanes: MAC
    lanes (output neurons at once) of the head engine. root_bits: quotient / root bits per
    cycle of the normaliser's division and square root. The defaults (docs/rtl.md "Knobs")
    put the Pairwise-MNIST paper model (runs/paper) at 1,518 cycles per sample (median)."""
    words: int = 8
    conv_lanes: int | None = None
    pixel_lanes: int = 8
    head_lanes: int = 20
    root_bits: int = 4

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "conv_lanes":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HrnError(f"RTL knob {f.name} must be a positive integer, got {value!r}")
        if self.words & (self.words - 1):
            raise HrnError(f"RTL knob words must be a power of two (the hash unit's banks), got {self.words}")

    def lanes_of(self, unit) -> int:
        """Conv lanes of one unit (UnitQ): the knob, capped at its out channels."""
        out_channels = unit.layers[0].out_channels
        return out_channels if self.conv_lanes is None else min(self.conv_lanes, out_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "RtlKnobs":
        """A copy with the given knobs replaced (None values are ignored)."""
        return RtlKnobs(**{**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

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
    # Lattice ECP5-85F (LFE5U-85F: 83,640 LUT4, 156 MULT18X18D, 208 DP16KD): two words per beat,
    # one output pixel and 4 output channels per conv cycle, 12 head lanes (each lane's weights
    # of the paper heads fit 8 DP16KD slices: 96 block RAMs; 15 or 16 lanes took 120-128 and left
    # the part too congested to route), 2 root bits a cycle. docs/rtl.md
    # "A preset for the ECP5-85F" gives the choice and its measurements.
    "ecp5-85f": RtlKnobs(words=2, conv_lanes=4, pixel_lanes=1, head_lanes=12, root_bits=2),
}


def preset(name: str | None) -> RtlKnobs:
    """The knobs of preset `name` (None: the defaults, the large-part design)."""
    if name is None:
        return RtlKnobs()
    if name not in PRESETS:
        raise HrnError(f"unknown preset {name!r}: one of {', '.join(PRESETS)}")
    return PRESETS[name]
