"""The simulator's graphs (networkx): the routed dataflow, its unit transitions, the chip.

- `dataflow_graph`: the blocks of the routed dataflow (hash unit, normaliser, projection
  comparator, residue/embedding, one conv engine per unit, heads) with their service times
  from the RTL's cycle formulas (through `hrn_hw.rtl.latency`, never a copy) and the streams
  between them.
- `transition_graph`: which unit follows which, weighted by the workload's routes.
- `architecture_graph`: the resources a mapping uses (engines or cores, FIFOs or links) with
  their measured utilisation.
"""

from __future__ import annotations

import re

import networkx as nx
import numpy as np

from hrn_hw.dataflow.workload import Workload
from hrn_hw.rtl.crossbar import routing_table
from hrn_hw.rtl.cycles import hash_unit_cycles, normaliser_cycles, projection_cycles, residue_cycles
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.latency import conv_call_cycles, head_run_cycles


def dataflow_graph(qm, knobs: RtlKnobs) -> nx.DiGraph:
    """Blocks as nodes (attribute `cycles`: the block's formula per frame kind at the knobs),
    streams as edges (attribute `words`: frame size)."""
    table = routing_table(qm)
    s, W = int(qm.s), knobs.words
    g = nx.DiGraph(name="routed dataflow", knobs=knobs.to_dict())
    g.add_node("input", kind="port", cycles={})
    g.add_node("hash", kind="block", cycles={f"state{i} {list(st.shape)}": hash_unit_cycles(st.size, s, words=W)
                                             for i, st in enumerate(table.states)})
    g.add_node("normaliser", kind="block",
               cycles={"h": normaliser_cycles(s, int(qm.norm_k), words=W, root_bits=knobs.root_bits)})
    g.add_node("projection", kind="block", cycles={"select": projection_cycles(s, qm.num_units, words=W)})
    g.add_node("residue", kind="block", cycles={"residue": residue_cycles(s, words=W)})
    g.add_node("head", kind="block", cycles={f"task{t}": head_run_cycles(qm, t, knobs) for t in range(len(qm.heads))})
    g.add_node("output", kind="port", cycles={})
    g.add_edge("input", "hash", words=table.states[0].size)
    g.add_edge("hash", "normaliser", words=s)
    g.add_edge("normaliser", "projection", words=s)
    g.add_edge("normaliser", "residue", words=s)
    g.add_edge("projection", "residue", words=qm.m + 1)
    g.add_edge("residue", "head", words=s)
    g.add_edge("head", "output", words=qm.max_classes)
    for (state, unit), (call_id, nxt) in sorted(table.transitions.items()):
        name = f"unit{unit}"
        if name not in g:
            g.add_node(name, kind="conv engine", cycles={})
            g.add_edge("residue", name, words=1)
        g.nodes[name]["cycles"][f"state{state} {list(table.states[state].shape)}"] = \
            conv_call_cycles(qm, unit, call_id, knobs)
        g.add_edge(name, "hash", words=max(table.states[nxt].size, g.edges.get((name, "hash"), {}).get("words", 0)))
    return g


def transition_graph(work: Workload, path_bytes=None) -> nx.DiGraph:
    """Nodes "input", "unit<u>", "head"; edge weight = samples that take the transition
    (input -> first unit, unit -> next unit, last unit -> head; input -> head for a sample
    that found no unit). With `path_bytes(units, task)` (bytes moved on each transition of
    such a route), edges also carry "bytes": the mean per sample that takes them."""
    g = nx.DiGraph(name="unit transitions")
    g.add_nodes_from(["input", "head"])
    rows, inverse = work.classes()
    counts = np.bincount(inverse, minlength=len(rows))
    for row, count in zip(rows, counts):
        units = [int(u) for u in row[:-1] if u >= 0]
        path = ["input"] + [f"unit{u}" for u in units] + ["head"]
        moved = path_bytes(units, int(row[-1])) if path_bytes else [0] * (len(path) - 1)
        for a, b, nbytes in zip(path, path[1:], moved):
            if not g.has_edge(a, b):
                g.add_edge(a, b, weight=0, total=0)
            g.edges[a, b]["weight"] += int(count)
            g.edges[a, b]["total"] += int(count) * nbytes
    for _, _, edge in g.edges(data=True):
        total = edge.pop("total")
        if path_bytes:
            edge["bytes"] = total / edge["weight"]
    return g


LINK = re.compile(r"link\((\d+),(\d+)\)>\((\d+),(\d+)\)")


def architecture_graph(mapped, results: dict | None = None) -> nx.DiGraph:
    """The resources of a mapping, one node per pool (an engine and its copies, or a core) with
    its kind, servers and utilisation (when `results` is given); a mesh's links as edges
    between cores, an FPGA's FIFOs as edges between the engines that consecutive jobs use."""
    util = {q["name"]: q["utilisation"] for q in (results or {}).get("pools", [])}
    pb = mapped.problem
    kind_of = {p: mapped.server_kind[int(np.argmax(pb.pool_servers == p))] for p in range(pb.num_pools)}
    g = nx.DiGraph(name="architecture")
    for p, name in enumerate(mapped.pools):
        match = LINK.fullmatch(name)
        if match:
            g.add_edge(f"core({match[1]},{match[2]})", f"core({match[3]},{match[4]})", kind="link", name=name,
                       utilisation=util.get(name))
        else:
            g.add_node(name, kind=kind_of[p], servers=int((pb.pool_servers == p).sum()), utilisation=util.get(name))
    if "link" not in kind_of.values():
        for c in range(len(pb.chain_start) - 1):
            pools = pb.job_pool[pb.chain_start[c]:pb.chain_start[c + 1]]
            for a, b in zip(pools, pools[1:]):
                if a != b:
                    g.add_edge(mapped.pools[a], mapped.pools[b], kind="fifo")
    return g
