"""Cycle model of the RTL blocks: the start of issue 4's per-sample latency model.

Each function gives a block's latency in clock cycles, counted from the cycle of its first
input handshake to the cycle of its last output handshake, both included, with the input
stream never idle and the output never stalled. The sim/ testbenches measure exactly that and
require equality (docs/rtl.md lists the measured values). Stalls on either stream add one
cycle each; the blocks never lose or reorder data under them.
"""

from __future__ import annotations

from hrn_hw.rtl.hash_unit import HASH_STAGES
from hrn_hw.rtl.normaliser import MAC_STAGES, OUT_STAGES


def hash_unit_phases(n: int, s: int, lanes: int = 1) -> dict:
    """Cycles per phase of the hash unit for a map of n elements into s buckets."""
    if lanes != 1:
        raise NotImplementedError("hash unit: only lanes = 1 so far")
    return {
        "in": n,                    # one element per cycle
        "pipeline": HASH_STAGES,    # index, 2 x fmix32 (two multiply stages each), bucket, RMW
        "drain": 1,                 # the phase FSM sees the empty pipeline
        "read_latency": 1,          # synchronous phi memory read before the first word
        "out": s,                   # phi[0..s-1], one per cycle (cleared as read)
    }


def hash_unit_cycles(n: int, s: int, lanes: int = 1) -> int:
    """Hash unit latency: n + s + 9 (lanes = 1)."""
    return sum(hash_unit_phases(n, s, lanes).values())


def normaliser_phases(s: int, norm_k: int) -> dict:
    """Cycles per phase of the normaliser for s entries and K = norm_k."""
    return {
        "load": s,                  # phi in, stored, squared
        "flush": MAC_STAGES + 1,    # square and accumulate drain; the FSM sees it empty
        "div": 2 * norm_k + 1,      # restoring division 2^(2K) / E, one quotient bit per cycle
        "sqrt": norm_k + 1,         # isqrt of the (2K+1)-bit quotient, two bits per cycle
        "out_pipeline": OUT_STAGES, # memory read, product, round/saturate registers
        "out": s,                   # h_0 .. h_{s-1}, one per cycle
    }


def normaliser_cycles(s: int, norm_k: int) -> int:
    """Normaliser latency: 2 s + 3 K + 8."""
    return sum(normaliser_phases(s, norm_k).values())


def projection_phases(s: int, num_units: int) -> dict:
    """Cycles per phase of the projection comparator (M * m MAC lanes) for s entries of h."""
    return {
        "in": s,                    # h_j into every lane, one per cycle
        "flush": 2,                 # ROM read / h register, accumulate; the FSM sees it empty
        "convert": 1,               # every c_ui rounded and saturated at once
        "square": 1,                # e_u = sum_i c_ui^2 for every unit at once
        "scan": num_units,          # masked argmax, one unit per cycle
        "out": 1,                   # the result handshake
    }


def projection_cycles(s: int, num_units: int) -> int:
    """Projection comparator latency: s + M + 5."""
    return sum(projection_phases(s, num_units).values())


# The blocks built later keep their formulas beside their hardware; this module is the one
# place that lists every block's latency.
from hrn_hw.rtl.conv_engine import conv_engine_cycles, conv_engine_phases  # noqa: E402
from hrn_hw.rtl.head import head_cycles  # noqa: E402
from hrn_hw.rtl.residue import embedding_cycles, residue_cycles, residue_phases  # noqa: E402

__all__ = ["hash_unit_phases", "hash_unit_cycles", "normaliser_phases", "normaliser_cycles",
           "projection_phases", "projection_cycles", "conv_engine_phases", "conv_engine_cycles",
           "residue_phases", "residue_cycles", "embedding_cycles", "head_cycles"]
