"""A timing-study wrapper that puts a design with wide ports on four pins (docs/rtl.md,
"Implementation on ECP5 (open flow)").

Every input bit of the design but its clock comes from a serial-in shift register (pin `si`),
and every output bit is captured into a parallel-load shift register (pin `load`, registered)
that shifts out on pin `so`. Each port is then a register-to-register path on the design's
clock, as inside a larger chip; all outputs stay observable and no input is constant, so
synthesis and place and route keep every cell of the design. The cost is one flip-flop per
port bit and one for `load`, and one LUT4 per output bit (the load multiplexer).
"""

from __future__ import annotations

import re

WRAP_TOP = "hrn_wrap"
INSTANCE = "dut"
PINS = ("clk", "si", "load", "so")
PRINTABLE = re.compile(r"[!-~]+")       # what an escaped Verilog identifier may hold


def netlist_ports(module: dict) -> list[tuple[str, str, int]]:
    """(name, direction, width) of a Yosys JSON module's ports, in its order."""
    out = []
    for name, port in module["ports"].items():
        if port["direction"] not in ("input", "output"):
            raise ValueError(f"port {name}: {port['direction']} ports are not supported")
        if not PRINTABLE.fullmatch(name):
            raise ValueError(f"port {name!r}: not a Verilog identifier")
        out.append((name, port["direction"], len(port["bits"])))
    return out


def _id(name: str) -> str:
    """`name` as an escaped Verilog identifier: valid for any port name, keywords included
    (the top level has a port `task`)."""
    return f"\\{name} "


def _decl(direction: str, name: str, width: int) -> str:
    return f"{direction} {f'[{width - 1}:0] ' if width > 1 else ''}{_id(name)}"


def _slices(ports, bus: str) -> dict[str, str]:
    """Each port's bit range of the shift register `bus`, packed in port order from bit 0."""
    out, lo = {}, 0
    for name, _, width in ports:
        out[name] = f"{bus}[{lo + width - 1}:{lo}]"
        lo += width
    return out


def wrapper_verilog(top: str, ports: list[tuple[str, str, int]], clock: str = "clk") -> str:
    """Verilog of a black-box stub of `top` (its ports) and of WRAP_TOP around it."""
    if any(name in PINS for name, _, _ in ports if name != clock) or clock not in {p[0] for p in ports}:
        raise ValueError(f"{top}: the wrapper needs a clock port {clock!r} and no other port named {PINS}")
    ins = [p for p in ports if p[1] == "input" and p[0] != clock]
    outs = [p for p in ports if p[1] == "output"]
    if not ins or not outs:
        raise ValueError(f"{top}: the wrapper needs at least one input besides {clock} and one output")
    n_in, n_out = sum(p[2] for p in ins), sum(p[2] for p in outs)
    conns = {clock: clock, **_slices(ins, "isr"), **_slices(outs, "outs")}
    stub = ",\n  ".join(_decl(d, n, w) for n, d, w in ports)
    inst = ",\n    ".join(f".{_id(n)}({conns[n]})" for n, _, _ in ports)
    return f"""// {WRAP_TOP}: {top} on four pins for place and route (hrn_hw/rtl/serial_wrap.py).
(* blackbox *)
module {_id(top)}(
  {stub});
endmodule

module {WRAP_TOP}(input clk, input si, input load, output so);
  reg [{n_in - 1}:0] isr;
  reg [{n_out - 1}:0] osr;
  reg load_q;
  wire [{n_out - 1}:0] outs;
  {_id(top)}{INSTANCE}(
    {inst});
  always @(posedge clk) begin
    load_q <= load;
    isr <= {{isr, si}};
    osr <= load_q ? outs : {{osr, 1'b0}};
  end
  assign so = osr[{n_out - 1}];
endmodule
"""


def wrapper_cost(ports: list[tuple[str, str, int]], clock: str = "clk") -> dict:
    """Flip-flops and LUT4s the wrapper adds, and the design's port bits it registers."""
    n_in = sum(w for n, d, w in ports if d == "input" and n != clock)
    n_out = sum(w for _, d, w in ports if d == "output")
    return {"in_bits": n_in, "out_bits": n_out, "FF": n_in + n_out + 1, "LUT4": n_out, "pins": len(PINS)}
