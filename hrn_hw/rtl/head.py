"""Head engine: the MLP heads of every task, selected by task id at run time (docs/rtl.md,
"Residue, embedding and heads").

Bit-exact with `hrn_hw.golden.run_head` and the logits padding of `hrn_hw.golden.run`: per
layer y = convert(x W + b) (exact accumulation; the bias aligned to max(frac_x + frac_w,
frac_b)), then LeakyReLU x > 0 ? x : convert(alpha * x) in y's format, except after the last
layer; the logits are the last layer's raw integers, padded with zeros to the largest head.

Interface (clock `clk`, synchronous reset `rst`):
- `task`: the head, sampled with the first embedding word.
- input stream `in_valid` / `in_ready` / `in_data`: the s embedding words (emb_fmt), W words
  per beat (the residue block's read-out; positions past s are ignored).
- output stream `out_valid` / `out_ready` / `out_data` / `out_last`: max_classes logits (raw
  integers of the head's last out format, sign-extended to `out_data`; zeros past the head's
  classes), with back-pressure.

Datapath (parameter `words` W, default 1): two activation memories of rows of W words
(ping-pong; the embedding goes into the first, one beat per row), LANES multiply-accumulate
lanes, each with a weight ROM of rows of W words, computing LANES output neurons of a layer at
once over ceil(n_in / W) cycles (one x row read per cycle, broadcast to the lanes; the read
data into operand registers, W multipliers per lane into product registers, their adder tree
into a row-sum register, then the accumulate: MAC_LATENCY = 4 cycles from issue to
accumulate, and a flush cycle per group). The lanes' sums are then written back one output
row per cycle (the row's neurons of this group: up to W converters, each a lane select and a
bias read, add, shift, saturate, then LeakyReLU with its slope as shift-and-add in two stages;
WB_STAGES = 10 cycles from issue to the write) into the other memory, with a write enable per
word; a layer's last write lands before the next layer reads (a drain of WB_STAGES cycles).
Layer formats differ per (head, layer): each converter step is a case over the distinct
values of its own constant, its index registered from the global layer index. OUT reads the
logits through a register of the read row (OUT_LATENCY = 2). Block-RAM read data always goes
into a register before any logic (timing closure on an ECP5).
Weight ROM of lane l, for each global layer (heads in order, layers in order), group g, input
row k: W[kW .. kW + W - 1, g*LANES + l] (zero past n_in and n_out), at row w_base +
g*ceil(n_in / W) + k; the bias ROM holds each layer's biases as rows of W words, each aligned
to the layer's accumulation format max(frac_x + frac_w, frac_b) with the convert's rounding
half added (exact integers).

Parallelism knob `lanes` (MACs per cycle), default LANES = 10: for the paper heads
(300-60-10-2) it divides 60 and 10, so no lane idles except in the 2-class layer.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.rtl.arith import csd_terms
from hrn_hw.rtl.ebr import sliced_rom
from hrn_hw.rtl.fixed import convert_expr, saturate, shift_right
from hrn_hw.rtl.rows import beats, delay_line, mux_select, pack_words, row_init, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

LANES = 10
LOAD, MAC, WB, WDRAIN, OUT = range(5)
MAC_LATENCY = 4       # MAC issue to its accumulate: operand registers, products, row sum, accumulate
MAC_FLUSH = 1         # per group: one cycle after the last row's issue before the write-back
WB_ACC = MAC_LATENCY - MAC_FLUSH   # write-back stage that samples the lanes (the last sum is in)
WB_STAGES = WB_ACC + 7  # write-back issue to the write: lane sample, add, shift, saturate, slope (2), act
OUT_LATENCY = 2       # OUT: the memory read, then a register of the read row


def head_layers(heads) -> list:
    """Per head, its layers as dicts (n_in, n_out, weight, bias, formats, alpha); heads are
    HeadQ (or lists of DenseQ)."""
    out = []
    for h in heads:
        layers = h.layers if hasattr(h, "layers") else h
        out.append([{"n_in": int(l.weight.shape[0]), "n_out": int(l.weight.shape[1]), "weight": l.weight,
                     "bias": l.bias, "w_fmt": l.w_fmt, "b_fmt": l.b_fmt, "out_fmt": l.out_fmt, "act": l.act}
                    for l in layers])
    return out


def head_params(qm, lanes: int = LANES, words: int = 1) -> dict:
    """HeadEngine parameters of a QuantModel."""
    return {"heads": qm.heads, "emb_fmt": qm.emb_fmt, "s": int(qm.s), "lanes": lanes, "words": words}


def write_back_rows(n_out: int, lanes: int, words: int) -> int:
    """Write-back cycles of one layer: per group of `lanes` neurons, the output rows (of W
    words) it touches; n_out at W = 1."""
    total = 0
    for lo in range(0, n_out, lanes):
        hi = min(lo + lanes, n_out)
        total += (hi - 1) // words - lo // words + 1
    return total


def head_phases(s: int, layer_sizes, max_classes: int, lanes: int = LANES, words: int = 1) -> dict:
    """Cycles per phase of one head run: layer_sizes [(n_in, n_out)] of the selected head."""
    mac = flush = wb = drain = 0
    for n_in, n_out in layer_sizes:
        mac += beats(n_out, lanes) * beats(n_in, words)   # one x row per cycle into all lanes
        flush += beats(n_out, lanes) * MAC_FLUSH           # per group: one cycle before the write-back
        wb += write_back_rows(n_out, lanes, words)         # one output row per cycle
        drain += WB_STAGES            # the last write lands before the next layer reads
    return {"load": beats(s, words), "mac": mac, "mac_flush": flush, "write_back": wb, "drain": drain,
            "read_latency": OUT_LATENCY, "out": max_classes}


def head_cycles(s: int, layer_sizes, max_classes: int, lanes: int = LANES, words: int = 1) -> int:
    """Head latency (first embedding handshake to last logit handshake): ceil(s / W) + sum
    over layers of (ceil(n_out / lanes) * (ceil(n_in / W) + MAC_FLUSH) + write-back rows +
    WB_STAGES), + OUT_LATENCY + max_classes (MAC_FLUSH 1, WB_STAGES 10, OUT_LATENCY 2); at
    W = 1 the write-back is n_out."""
    return sum(head_phases(s, layer_sizes, max_classes, lanes, words).values())


class HeadEngine(wiring.Component):
    """Parameters: heads (QuantModel.heads: per task a list of DenseQ), emb_fmt (the input
    format), s (embedding size), lanes (MAC lanes, LANES by default), words (W per input beat
    and per memory row, default 1)."""

    def __init__(self, heads, emb_fmt: Fmt, s: int, lanes: int = LANES, words: int = 1):
        self.layers = head_layers(heads)
        self.emb_fmt, self.s, self.lanes, self.words = emb_fmt, int(s), int(lanes), int(words)
        if self.lanes < 1 or self.words < 1:
            raise ValueError("lanes and words must be >= 1")
        flat = [l for h in self.layers for l in h]
        for h in self.layers:
            if h[0]["n_in"] != s:
                raise ValueError("every head's first layer must take the s embedding words")
            for a, b in zip(h, h[1:]):
                if a["n_out"] != b["n_in"]:
                    raise ValueError("head layer sizes do not chain")
        if not all(l["out_fmt"].signed and l["w_fmt"].signed and l["b_fmt"].signed for l in flat):
            raise ValueError("head engine: signed weight, bias and output formats only")
        self.num_tasks = len(self.layers)
        self.max_classes = max(h[-1]["n_out"] for h in self.layers)
        self.x_width = max([emb_fmt.width + (0 if emb_fmt.signed else 1)] + [l["out_fmt"].width for l in flat])
        self.w_width = max(l["w_fmt"].width for l in flat)
        self.b_width = max(l["b_fmt"].width for l in flat)
        self.out_width = max(h[-1]["out_fmt"].width for h in self.layers)
        self.depth = max([s] + [l["n_out"] for l in flat])
        self.acc_width = self.x_width + self.w_width + max(1, max(l["n_in"] for l in flat).bit_length()) + 1
        super().__init__({
            "task": In(range(max(2, self.num_tasks))),
            **stream_in("in", row_shape(emb_fmt.width, self.words, emb_fmt.signed)),
            **stream_out("out", signed(self.out_width), last=True),
        })

    def _tables(self):
        """Global layer list with ROM bases (in rows), the weight ROM contents and the bias ROM
        contents: per layer c = (b << (top - frac_b)) + half, the bias aligned to the layer's
        accumulation format top = max(frac_x + frac_w, frac_b) with the convert's rounding half
        folded in (so the write-back adds one term), and that ROM's word width."""
        L, W = self.lanes, self.words
        glayers, wroms = [], [[] for _ in range(L)]
        first = []
        for t, head in enumerate(self.layers):
            first.append(len(glayers))
            x_frac = self.emb_fmt.frac
            for p, l in enumerate(head):
                groups, rows_in = beats(l["n_out"], L), beats(l["n_in"], W)
                fxw, fb = x_frac + l["w_fmt"].frac, l["b_fmt"].frac
                top = max(fxw, fb)
                shift = top - l["out_fmt"].frac
                half = (1 << (shift - 1)) if shift > 0 and l["out_fmt"].rounding == "rnd" else 0
                g = {**l, "task": t, "pos": p, "last": p == len(head) - 1, "groups": groups, "rows_in": rows_in,
                     "w_base": len(wroms[0]), "x_frac": x_frac, "acc_shift": top - fxw, "shift": shift}
                w = np.zeros((rows_in * W, groups * L), dtype=np.int64)
                w[:l["n_in"], :l["n_out"]] = l["weight"]
                for lane in range(L):
                    for gg in range(groups):
                        wroms[lane].extend(row_init(w[:, gg * L + lane], self.w_width, W))
                g["bias_c"] = [(int(b) << (top - fb)) + half for b in l["bias"]]
                glayers.append(g)
                x_frac = l["out_fmt"].frac
        c_width = max([2] + [abs(c).bit_length() + 1 for g in glayers for c in g["bias_c"]])
        brom = []
        for g in glayers:
            g["b_base"] = len(brom)
            brom.extend(row_init(g["bias_c"], c_width, W))
        return glayers, first, wroms, brom, c_width

    def elaborate(self, platform):
        """The layer constants, the activation memories, LOAD, MAC, write-back, OUT and the
        phase sequencer."""
        mod = Module()
        W = self.words
        glayers, first, wroms, brom, c_width = self._tables()
        NG = len(glayers)
        aw = max(1, self.depth.bit_length())

        phase = Signal(range(5))
        gl = Signal(range(max(2, NG)))        # global layer index
        task_r = Signal.like(self.task)
        src = Signal()                         # activation memory read this layer (dst = ~src)
        lc = self._layer_constants(mod, gl, glayers, first, wroms, brom, aw)
        bufs = self._act_memories(mod)

        # ---- LOAD: the embedding into act0, one beat per row ----
        j = Signal(aw)                         # LOAD's beat; WDRAIN's cycle
        take = self.in_valid & self.in_ready
        mod.d.comb += self.in_ready.eq(phase == LOAD)
        ef = self.emb_fmt
        emb_row = pack_words(mod, row_words(self.in_data, ef.width, W, ef.signed), self.x_width, name="emb")

        mac = self._mac(mod, phase, src, lc, bufs, wroms, aw)
        wb = self._write_back(mod, phase, gl, lc, mac.accs, glayers, brom, c_width, aw)
        out = self._out(mod, src, bufs, aw)
        self._act_ports(mod, phase, src, bufs, mac, wb, out, take, j, emb_row)
        seq = SimpleNamespace(phase=phase, gl=gl, task_r=task_r, src=src, j=j, take=take, first=first)
        self._sequencer(mod, seq, lc, mac, wb, out)
        return mod

    def _layer_constants(self, mod: Module, gl, glayers, first, wroms, brom, aw: int):
        """The current layer's constants in registers: rows_in, n_out, last, w_base, b_base.
        They load with gl (a layer's first MAC cycle uses them): from a table per task at the
        end of LOAD (`load_first(t)`), from `nxt` (the next layer's, registered from gl + 1
        during the layer) at the end of WDRAIN (`load_next`)."""
        widths = {"rows_in": aw + 1, "n_out": aw + 1, "last": 1, "w_base": max(1, len(wroms[0]).bit_length()),
                  "b_base": max(1, len(brom).bit_length())}
        cur = {k: Signal(n, name=f"lc_{k}") for k, n in widths.items()}
        nxt = {k: Signal(n, name=f"lc_next_{k}") for k, n in widths.items()}
        # (If/Elif chains and Mux trees rather than Switch: Amaranth writes a Switch as
        # per-signal incomplete Verilog cases, which Verilator's CASEINCOMPLETE rejects)
        for k in widths:
            mod.d.sync += nxt[k].eq(_by_layer(gl + 1, [int(g[k]) for g in glayers]))

        def first_of(t, k):
            return _by_layer(t, [int(glayers[f][k]) for f in first])

        return SimpleNamespace(**cur, nxt=nxt, first_of=first_of, load_first=lambda t: [cur[k].eq(first_of(t, k))
                                                                                        for k in widths],
                               load_next=[cur[k].eq(nxt[k]) for k in widths])

    def _act_memories(self, mod: Module):
        """The two activation memories (ping-pong): rows of W words, a write enable per word.
        Returns [(read port, write port)] of act0, act1."""
        xw, W = self.x_width, self.words
        bufs = []
        for b in range(2):
            mem = memory.Memory(shape=row_shape(xw, W), depth=beats(self.depth, W), init=[])
            mod.submodules[f"act{b}"] = mem
            bufs.append((mem.read_port(), mem.write_port(granularity=xw if W > 1 else None)))
        return bufs

    def _mac(self, mod: Module, phase, src, lc, bufs, wroms, aw: int):
        """MAC: acc += sum_p x_p w_p over one x row per cycle, broadcast to the LANES lanes (a
        weight ROM each). A row issued in cycle c: memory reads (c), operand registers (c + 1),
        the W products (c + 2), their sum (c + 3), the accumulate (c + 4 = c + MAC_LATENCY).
        The weight ROMs' address is a register of its own (waddr = w_base + group * rows_in +
        k, counting issues; loaded with the layer constants): it fans out to every lane's
        block RAMs. Returns k (the input row), waddr, issue, accs."""
        L, W, xw = self.lanes, self.words, self.x_width
        k = Signal(aw + 1)                    # input row (rows_in: the group's flush cycle)
        waddr = Signal.like(lc.w_base)        # w_base + group * rows_in + k
        issue = Signal()
        mod.d.comb += issue.eq((phase == MAC) & (k < lc.rows_in))
        with mod.If(issue):
            mod.d.sync += waddr.eq(waddr + 1)
        first0 = Signal()
        mod.d.comb += first0.eq(issue & (k == 0))
        v = delay_line(mod, issue, MAC_LATENCY)[-1]
        first = delay_line(mod, first0, MAC_LATENCY)[-1]
        src1 = Signal()
        mod.d.sync += src1.eq(src)
        # operand registers: block-RAM read data goes into registers before any logic
        xr = [Signal(signed(xw), name=f"xr{p}") for p in range(W)]
        mod.d.sync += [r.eq(x) for r, x in zip(xr, row_words(Mux(src1, bufs[1][0].data, bufs[0][0].data), xw, W))]
        accs = []
        for lane in range(L):
            # (read every cycle: only issued rows accumulate); bit slices of one block RAM each
            wdata = sliced_rom(mod, f"w{lane}", self.w_width * W, wroms[lane] or [0], waddr)
            wr = [Signal(signed(self.w_width), name=f"wr{lane}_{p}") for p in range(W)]
            mod.d.sync += [r.eq(w) for r, w in zip(wr, row_words(wdata, self.w_width, W))]
            # one multiplier per register, then one adder tree, then the accumulate
            pr = [Signal(signed(xw + self.w_width), name=f"pr{lane}_{p}") for p in range(W)]
            mod.d.sync += [q.eq(x * w) for q, x, w in zip(pr, xr, wr)]
            prod = Signal(signed(self.acc_width), name=f"prod{lane}")
            mod.d.sync += prod.eq(tree_sum(pr))
            acc = Signal(signed(self.acc_width), name=f"acc{lane}")
            with mod.If(v):
                mod.d.sync += acc.eq(Mux(first, 0, acc) + prod)
            accs.append(acc)
        return SimpleNamespace(k=k, waddr=waddr, issue=issue, accs=accs)

    def _layer_select(self, mod: Module, gl, keys, name: str):
        """The distinct values of a per-layer key and a register holding the current layer's
        index among them (one cycle behind gl; the write-back uses it many cycles after a
        layer starts); None when all layers agree."""
        vals = list(dict.fromkeys(keys))
        if len(vals) == 1:
            return vals, None
        idx = Signal(range(len(vals)), name=name)
        mod.d.sync += idx.eq(_by_layer(gl, [vals.index(k) for k in keys]))
        return vals, idx

    def _write_back(self, mod: Module, phase, gl, lc, accs, glayers, brom, c_width: int, aw: int):
        """Write-back: one output row per cycle, the group's neurons in it. A row issued in
        cycle t: the lanes' sums are final from t + WB_ACC (MAC_LATENCY after the group's last
        row), so the bias ROM reads in t + WB_ACC - 1 and, in t + WB_ACC, the read data and the
        row's sums (lane select) go into registers (WB_ACC = 3); then s = (acc << acc_shift)
        + c (t + 4), r = s >> shift (t + 5), z = saturate(r) (t + 6), alpha z as pairwise sums
        of shifted z (t + 7) and their total (t + 8), y = LeakyReLU (t + 9) and the write
        (t + WB_STAGES = t + 10). Layer formats differ per (head, layer): each
        step is a case over the distinct values of its own constant, the case index
        registered from gl. Returns lo, row, rs, hi and the write's row_w, en_w, y_w."""
        L, W, xw = self.lanes, self.words, self.x_width
        lo = Signal(aw + 2)                    # the group's first neuron group * L
        row = Signal(aw)                       # output row being written
        rs = Signal(aw + 2)                    # its first neuron row * W
        hi = Signal(aw + 2)                    # one past the group's last neuron
        mod.d.comb += hi.eq(Mux(lo + L < lc.n_out, lo + L, lc.n_out))
        wissue = Signal()
        mod.d.comb += wissue.eq(phase == WB)
        en0 = Signal(W)
        lanes0 = [Signal(range(max(2, L)), name=f"lane0_{p}") for p in range(W)]
        for p in range(W):
            n = rs + p
            mod.d.comb += [en0[p].eq(wissue & (n >= lo) & (n < hi)), lanes0[p].eq(n - lo)]
        ens = delay_line(mod, en0, WB_STAGES)
        rows = delay_line(mod, row, WB_STAGES)
        lanes = [delay_line(mod, ln, WB_ACC)[-1] for ln in lanes0]
        # bias ROM: read in t + WB_ACC - 1, its data registered in t + WB_ACC
        brom_m = memory.Memory(shape=row_shape(c_width, W), depth=max(1, len(brom)), init=brom or [0])
        mod.submodules.bias = brom_m
        b_rd = brom_m.read_port()
        b_row = rows[WB_ACC - 2] if WB_ACC >= 2 else row
        mod.d.comb += b_rd.addr.eq(lc.b_base + b_row)
        a_vals, a_idx = self._layer_select(mod, gl, [g["acc_shift"] for g in glayers], "sel_acc_shift")
        r_vals, r_idx = self._layer_select(mod, gl, [g["shift"] for g in glayers], "sel_shift")
        z_vals, z_idx = self._layer_select(mod, gl, [(g["out_fmt"].qmin, g["out_fmt"].qmax) for g in glayers],
                                           "sel_sat")
        z_fmts = [next(g["out_fmt"] for g in glayers if (g["out_fmt"].qmin, g["out_fmt"].qmax) == v) for v in z_vals]
        acts = [g for g in glayers if g["act"] is not None]
        m_vals, m_idx = self._layer_select(
            mod, gl, [int(g["act"].alpha) if g["act"] is not None else int(acts[0]["act"].alpha) if acts else 0
                      for g in glayers], "sel_alpha")

        def act_key(g):
            if g["act"] is None:
                return None
            f = g["out_fmt"]
            return (g["act"].alpha_frac, f.rounding, f.qmin, f.qmax)
        y_vals, y_idx = self._layer_select(mod, gl, [act_key(g) for g in glayers], "sel_act")
        y_reps = [None if v is None else next(g for g in glayers if act_key(g) == v) for v in y_vals]
        ys = []
        for p in range(W):
            a4 = Signal(signed(self.acc_width), name=f"wb_acc{p}")
            mod.d.sync += a4.eq(mux_select(accs, lanes[p]) if L > 1 else accs[0])
            c4 = Signal(signed(c_width), name=f"wb_c{p}")
            mod.d.sync += c4.eq(row_words(b_rd.data, c_width, W)[p])
            s_e = _mux_tree(a_idx, [a4 << v for v in a_vals]) + c4
            s5 = Signal(s_e.shape(), name=f"wb_s{p}")
            mod.d.sync += s5.eq(s_e)
            r_e = _mux_tree(r_idx, [shift_right(s5, v) for v in r_vals])
            r6 = Signal(r_e.shape(), name=f"wb_r{p}")
            mod.d.sync += r6.eq(r_e)
            z7 = Signal(signed(xw), name=f"wb_z{p}")
            mod.d.sync += z7.eq(_mux_tree(z_idx, [saturate(r6, f) for f in z_fmts]))
            # alpha z as shift-and-add (no multiplier), in two stages: pairwise sums, then the rest
            parts = [_slope_parts(mod, z7, v, f"wb_m{p}_{i}") for i, v in enumerate(m_vals)]
            m_e = _mux_tree(m_idx, [_slope_sum(q) for q in parts])
            m9 = Signal(m_e.shape(), name=f"wb_m{p}")
            z9 = delay_line(mod, z7, 2)[-1]
            mod.d.sync += m9.eq(m_e)
            opts = [z9 if g is None else
                    Mux(z9 > 0, z9, convert_expr(m9, g["out_fmt"].frac + g["act"].alpha_frac, g["out_fmt"]))
                    for g in y_reps]
            ys.append(_mux_tree(y_idx, opts))
        y10 = Signal(row_shape(xw, W))
        mod.d.sync += y10.eq(pack_words(mod, ys, xw, name="y"))
        return SimpleNamespace(lo=lo, row=row, rs=rs, hi=hi, row_w=rows[-1], en_w=ens[-1], y_w=y10)

    def _out(self, mod: Module, src, bufs, aw: int):
        """OUT: the logits from the last layer's memory (src after the final flip), one word a
        cycle, zero past the head's classes; two stages under back-pressure: the memory read
        (va, aa, pad, pa) and a register of the read row (vb, ab, padb, pb, rowb), from which the
        word goes out. Returns a, a_row, a_pos, va, aa, pad, pa, vb, ab, advance (stage 1's)
        and out_word, padb."""
        W, xw = self.words, self.x_width
        a = Signal(aw + 1)                     # logit index
        a_row, a_pos = Signal(aw), Signal(range(max(2, W)))
        va, aa, pad = Signal(), Signal(aw + 1), Signal()
        pa = Signal.like(a_pos)
        vb, ab, padb, pb = Signal(), Signal(aw + 1), Signal(), Signal.like(a_pos)
        rowb = Signal(row_shape(xw, W))
        advance2 = ~vb | self.out_ready
        advance = ~va | advance2
        with mod.If(advance2):
            mod.d.sync += [vb.eq(va), ab.eq(aa), padb.eq(pad), pb.eq(pa),
                           rowb.eq(Mux(src, bufs[1][0].data, bufs[0][0].data))]
        out_word = row_words(rowb, xw, W)[0] if W == 1 else mux_select(row_words(rowb, xw, W), pb)
        return SimpleNamespace(a=a, a_row=a_row, a_pos=a_pos, va=va, aa=aa, pad=pad, pa=pa, vb=vb, ab=ab,
                               padb=padb, advance=advance, out_word=out_word)

    def _act_ports(self, mod: Module, phase, src, bufs, mac, wb, out, take, j, emb_row):
        """The activation memories' ports: MAC reads src, OUT the last layer's output; LOAD
        writes act0, the write-back ~src. Then the logit stream's outputs."""
        W = self.words
        for b, (rd, wr) in enumerate(bufs):
            # read: MAC reads src; OUT reads the last layer's output (src after the final flip)
            with mod.If(phase == OUT):
                mod.d.comb += [rd.addr.eq(out.a_row), rd.en.eq(out.advance & (src == b))]
            with mod.Else():
                mod.d.comb += [rd.addr.eq(mac.k), rd.en.eq(mac.issue & (src == b))]
            # write: LOAD into act0, write-back into ~src
            wb_now = (wb.en_w != 0) & (src != b)
            write_back = [wr.addr.eq(wb.row_w), wr.data.eq(wb.y_w), wr.en.eq(wb.en_w)]
            if b == 0:
                with mod.If(take):
                    mod.d.comb += [wr.addr.eq(j), wr.data.eq(emb_row), wr.en.eq(Const(-1, W))]
                with mod.Elif(wb_now):
                    mod.d.comb += write_back
            else:
                with mod.If(wb_now):
                    mod.d.comb += write_back
        mod.d.comb += [
            self.out_valid.eq(out.vb),
            self.out_data.eq(Mux(out.padb, 0, out.out_word)),
            self.out_last.eq(out.vb & (out.ab == self.max_classes - 1)),
        ]

    def _sequencer(self, mod: Module, seq, lc, mac, wb, out):
        """The phase machine: LOAD, then per layer MAC and WB for each group of LANES neurons,
        WDRAIN (the last write lands, the memories swap), OUT after the last layer."""
        phase, j, s_rows = seq.phase, seq.j, beats(self.s, self.words)
        layer_start = [mac.k.eq(0), wb.lo.eq(0), wb.row.eq(0), wb.rs.eq(0)]
        with mod.If(phase == LOAD):
            with mod.If(seq.take):
                mod.d.sync += j.eq(j + 1)
                with mod.If(j == 0):
                    mod.d.sync += seq.task_r.eq(self.task)
                with mod.If(j == s_rows - 1):
                    t = Mux(j == 0, self.task, seq.task_r)
                    mod.d.sync += [seq.gl.eq(_by_layer(t, seq.first)), *lc.load_first(t),
                                   mac.waddr.eq(lc.first_of(t, "w_base"))]
                    mod.d.sync += [phase.eq(MAC), j.eq(0), seq.src.eq(0), *layer_start]
        with mod.Elif(phase == MAC):
            mod.d.sync += mac.k.eq(mac.k + 1)
            with mod.If(mac.k == lc.rows_in):
                # one flush cycle after the group's last row: the write-back reads the lanes
                # one cycle after its first issue, when the last product has been accumulated
                mod.d.sync += phase.eq(WB)
        with mod.Elif(phase == WB):
            self._next_row(mod, phase, lc, mac, wb)
        with mod.Elif(phase == WDRAIN):
            mod.d.sync += j.eq(j + 1)
            with mod.If(j == WB_STAGES - 1):
                mod.d.sync += [seq.src.eq(~seq.src), j.eq(0), *layer_start]
                with mod.If(lc.last):
                    mod.d.sync += [phase.eq(OUT), out.a.eq(0), out.a_row.eq(0), out.a_pos.eq(0), out.va.eq(0),
                                   out.vb.eq(0)]
                with mod.Else():
                    mod.d.sync += [phase.eq(MAC), seq.gl.eq(seq.gl + 1), *lc.load_next,
                                   mac.waddr.eq(lc.nxt["w_base"])]
        with mod.Else():                    # OUT
            self._next_logit(mod, phase, lc, out)

    def _next_row(self, mod: Module, phase, lc, mac, wb):
        """WB's step: the next output row, the next group (back to MAC) after the group's last
        row, WDRAIN after the layer's last."""
        W = self.words
        next_row = [wb.row.eq(wb.row + 1), wb.rs.eq(wb.rs + W)]
        with mod.If(wb.rs + W >= wb.hi):        # the group's last row
            with mod.If(wb.hi == lc.n_out):
                mod.d.sync += phase.eq(WDRAIN)
            with mod.Else():
                mod.d.sync += [phase.eq(MAC), mac.k.eq(0), wb.lo.eq(wb.hi)]
                with mod.If(wb.rs + W == wb.hi):  # the next group starts on the next row
                    mod.d.sync += next_row
        with mod.Else():
            mod.d.sync += next_row

    def _next_logit(self, mod: Module, phase, lc, out):
        """OUT's step: the next logit under back-pressure (its row and word), back to LOAD after
        the last handshake."""
        W, C = self.words, self.max_classes
        a, a_pos = out.a, out.a_pos
        with mod.If(out.advance):
            mod.d.sync += [out.va.eq(a < C), out.aa.eq(a), out.pa.eq(a_pos), out.pad.eq(a >= lc.n_out)]
            with mod.If(a < C):
                mod.d.sync += a.eq(a + 1)
                with mod.If(a_pos == W - 1):
                    mod.d.sync += [a_pos.eq(0), out.a_row.eq(out.a_row + 1)]
                with mod.Else():
                    mod.d.sync += a_pos.eq(a_pos + 1)
        with mod.If(out.vb & self.out_ready & (out.ab == C - 1)):
            mod.d.sync += [phase.eq(LOAD), out.va.eq(0), out.vb.eq(0)]

def _slope_parts(mod: Module, z, alpha: int, name: str) -> list:
    """First stage of alpha * z as shift-and-add (canonical signed digits): the positive and
    the negative digits' shifted copies of z summed in pairs into registers; [(sign, reg)]."""
    out = []
    for sign, terms in zip((1, -1), csd_terms(z, alpha)):
        for i in range(0, len(terms), 2):
            e = tree_sum(terms[i:i + 2])
            r = Signal(e.shape(), name=f"{name}_{len(out)}")
            mod.d.sync += r.eq(e)
            out.append((sign, r))
    return out


def _slope_sum(parts):
    """Second stage of alpha * z: the positive pairs' sum minus the negative pairs' sum."""
    pos = [r for sg, r in parts if sg > 0]
    neg = [r for sg, r in parts if sg < 0]
    if not pos and not neg:
        return Const(0, 1)
    if not neg:
        return tree_sum(pos)
    if not pos:
        return -tree_sum(neg)
    return tree_sum(pos) - tree_sum(neg)


def _mux_tree(index, values):
    """values[index] as a balanced tree of 2:1 muxes on the bits of a registered index (the
    last value for indices past the end); values[0] when index is None."""
    if index is None:
        return values[0]
    vals = list(values)
    vals += [vals[-1]] * ((1 << len(index)) - len(vals))
    for b in range(len(index)):
        vals = [Mux(index[b], vals[2 * i + 1], vals[2 * i]) for i in range(len(vals) // 2)]
    return vals[0]


def _by_layer(index, values):
    """values[index] (constants or signals) as a Mux chain; the last value for any other index."""
    out = values[-1]
    for k in range(len(values) - 2, -1, -1):
        out = Mux(index == k, values[k], out)
    return out


__all__ = ["HeadEngine", "LANES", "MAC_FLUSH", "MAC_LATENCY", "WB_ACC", "WB_STAGES", "head_layers", "head_params", "head_phases", "head_cycles",
           "write_back_rows"]
