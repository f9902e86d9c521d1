"""Rows of W words: the helpers every block uses for multi-word streams and the memories that
hold them (docs/rtl.md "Conventions", "Multi-word streams"), and the delay line of their
pipeline registers."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed


def beats(n: int, words: int) -> int:
    """Beats (rows) of an n-word frame at W words per beat: ceil(n / W)."""
    return -(-n // words)


def row_shape(width: int, words: int, is_signed: bool = True):
    """Shape of a row of W words: the word's own shape for W = 1 (the one-word block), else
    W * width unsigned bits, word i at [i*width, (i+1)*width)."""
    if words == 1:
        return signed(width) if is_signed else width
    return words * width


def row_init(values, width: int, words: int) -> list:
    """Memory contents of a word sequence as rows of W words (zero past its end)."""
    values = [int(v) for v in values]
    if words == 1:
        return values
    mask = (1 << width) - 1
    return [sum((v & mask) << (i * width) for i, v in enumerate(values[r * words:(r + 1) * words]))
            for r in range(beats(len(values), words))]


def row_words(row, width: int, words: int, is_signed: bool = True) -> list:
    """The W words of a row value, each as_signed when is_signed."""
    out = [row.word_select(i, width) for i in range(words)]
    return [w.as_signed() for w in out] if is_signed else out


def pack_words(mod: Module, values, width: int, is_signed: bool = True, name: str = "w"):
    """A row from W word expressions, each truncated or extended to width (via a signal)."""
    sigs = []
    for i, v in enumerate(values):
        sig = Signal(signed(width) if is_signed else width, name=f"{name}{i}")
        mod.d.comb += sig.eq(v)
        sigs.append(sig)
    return Cat(*sigs)


def tree_sum(terms):
    """A balanced adder tree of the terms."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [a + b for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) - len(terms) % 2:]
    return terms[0]


def frame_row_words(data, width: int, words: int, n: int, row) -> list:
    """The W words of an input beat at run-time row index `row` of an n-word frame, those past
    n (in the last row) forced to zero: a producer's padding never reaches the datapath."""
    rows = beats(n, words)
    tail = n - (rows - 1) * words                 # valid words of the last row
    return [Mux(row == rows - 1, 0, x) if i >= tail else x
            for i, x in enumerate(row_words(data, width, words))]


def mux_select(values, index):
    """values[index] over a run-time index as a mux chain (0 when out of range)."""
    out = Const(0, len(values[0]))
    for k, v in enumerate(values):
        out = Mux(index == k, v, out)
    return out


def delay_line(m, sig, stages: int) -> list:
    """`sig` delayed by 1 .. `stages` registers (a list, the last the most delayed); the
    registers are named <sig>_d1, <sig>_d2, ..."""
    out = []
    for k in range(stages):
        nxt = Signal.like(sig, name=f"{sig.name}_d{k + 1}")
        m.d.sync += nxt.eq(sig)
        out.append(nxt)
        sig = nxt
    return out


def frame_intake(mod: Module, valid, ready, rows: int, phases: int, accept: int):
    """A block that takes a frame of `rows` beats in phase `accept` of `phases`: its phase
    register, its beat (row) counter j and the handshake `take`; ready is high in `accept`."""
    phase = Signal(range(phases))
    j = Signal(max(1, rows.bit_length()))
    take = valid & ready
    mod.d.comb += ready.eq(phase == accept)
    return phase, j, take
