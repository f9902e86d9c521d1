"""Valid/ready streams: the one definition of every block's stream ports (docs/rtl.md,
"Conventions").

A stream called `x` is the flat ports `x_valid`, `x_ready`, `x_data` and (framed streams)
`x_last`, in that order: `x_valid`, `x_data`, `x_last` travel with the stream, `x_ready`
against it; a beat moves on a cycle with `x_valid & x_ready`. `stream_in` builds the members
of a stream into a block, `stream_out` those of a stream out of it, as a dict to splice into a
`wiring.Component` signature, so the port names and their order are the same on every block
(the cocotb testbenches and the top level address them by name).

Irregular streams use the same helpers:
- a handshake without data (the residue block's finish command `fin`): `shape=None`;
- a result handshake carrying several named signals (the projection comparator's
  `out_valid` / `out_ready` with `sel`, `ok`, `coef`, `energy`; the residue block's with
  `stop`, `energy`): `shape=None` and `fields`, members that travel with the stream, named in
  full, after the handshake;
- a monitor without back-pressure (the residue block's `r_valid` / `r_data` / `r_index`):
  `ready=False`, with `fields`.

Flat ports rather than `amaranth.lib.stream`'s nested signature on purpose: that one names the
Verilog ports `x__valid`, `x__payload`, and the generated Verilog's port names are part of the
blocks' contract.
"""

from __future__ import annotations

from amaranth.lib.wiring import In, Out


def _stream(name: str, shape, last: bool, ready: bool, fields: dict | None, fwd, back) -> dict:
    members = {f"{name}_valid": fwd(1)}
    if ready:
        members[f"{name}_ready"] = back(1)
    if shape is not None:
        members[f"{name}_data"] = fwd(shape)
    if last:
        members[f"{name}_last"] = fwd(1)
    for field, field_shape in (fields or {}).items():
        members[field] = fwd(field_shape)
    return members


def stream_in(name: str, shape=None, last: bool = False, ready: bool = True, fields: dict | None = None) -> dict:
    """Signature members of a stream into the block: `name`_valid, `name`_ready (out of the
    block), `name`_data of `shape` (none when None), `name`_last when `last`, then `fields`
    ({full name: shape}), all into the block but the ready."""
    return _stream(name, shape, last, ready, fields, In, Out)


def stream_out(name: str, shape=None, last: bool = False, ready: bool = True, fields: dict | None = None) -> dict:
    """Signature members of a stream out of the block: as `stream_in`, directions flipped
    (`name`_ready into the block, the rest out of it)."""
    return _stream(name, shape, last, ready, fields, Out, In)
