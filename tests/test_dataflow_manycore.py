"""The `manycore` architecture: the mesh NoC against its closed forms, and the routed HRN mapped
onto cores (service times, SRAM, replicas, placement)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hrn_hw.dataflow import arch as arch_mod
from hrn_hw.dataflow import mesh
from hrn_hw.dataflow.arch import ArchError
from hrn_hw.dataflow.manycore import (head_work, hash_work, map_manycore, normaliser_work, projection_work,
                                      residue_work, service_cycles, unit_work)
from hrn_hw.dataflow.mapped import PoolTable, build
from hrn_hw.dataflow.native import run
from hrn_hw.dataflow.placement import objective, optimise, traffic, transition_graph
from hrn_hw.dataflow.workload import Workload
from hrn_hw.export.shapes import unit_out_shape


# ---- the NoC ------------------------------------------------------------------------------

def packets_on_mesh(shape, packets, router_delay, width):
    """Outcome of packets (src, dst, bytes, arrival) on an otherwise idle mesh, one sample each."""
    table = PoolTable()
    mesh.add_links(table, shape)
    chains = [mesh.packet_jobs(a, b, n, router_delay, width) for a, b, n, _ in packets]
    mapped = build(table, chains, np.arange(len(packets)), np.array([p[3] for p in packets]), 0, 0)
    return run(mapped.problem)


@pytest.mark.parametrize("k", [4, 8])
def test_zero_load_latency_is_exact(k):
    combos = [((0, 0), (k - 1, k - 1), 64, 2, 16), ((0, k - 1), (k - 1, 0), 100, 3, 8), ((2, 1), (2, 3), 1, 1, 4),
              ((3, 3), (0, 0), 256, 5, 32), ((1, 2), (3, 2), 17, 2, 16), ((0, 1), (1, 0), 4, 1, 1)]
    for src, dst, nbytes, delay, width in combos:
        out = packets_on_mesh((k, k), [(src, dst, nbytes, 7)], delay, width)
        expected = mesh.zero_load_latency(mesh.hops(src, dst), nbytes, delay, width)
        assert expected == mesh.hops(src, dst) * delay + math.ceil(nbytes / width)
        assert int(out.done[0] - out.admit[0]) == expected, (src, dst, nbytes, delay, width)


def test_xy_route_goes_along_the_row_first():
    grid = mesh.cells((3, 5))
    for a, b in itertools.product(grid, grid):
        route = mesh.xy_route(a, b)
        assert len(route) == mesh.hops(a, b)
        assert [x for x, _ in route[1:]] == [y for _, y in route[:-1]]
        if route:
            assert route[0][0] == a and route[-1][1] == b
        assert all(mesh.hops(x, y) == 1 for x, y in route)
        vertical = [x[0] != y[0] for x, y in route]
        assert vertical == sorted(vertical)                  # every column move before any row move
    assert mesh.packet_jobs((1, 1), (1, 1), 64, 2, 16) == []
    assert len(mesh.links((3, 5))) == 2 * (3 * 4 + 5 * 2)


def test_packets_sharing_a_link_serialise():
    # ser = 64 / 16 = 4, router delay 2. A: (0,0) -> (0,3), B: (0,1) -> (0,3), both at cycle 0.
    # B takes (0,1)>(0,2) over [2, 6) and (0,2)>(0,3) over [4, 8): done at 8 (its zero-load
    # latency). A's second hop reaches (0,1)>(0,2) at 4, waits for B until 6, and its last hop
    # enters (0,2)>(0,3) at 8, as B leaves it: done at 12, 2 cycles late.
    out = packets_on_mesh((4, 4), [((0, 0), (0, 3), 64, 0), ((0, 1), (0, 3), 64, 0)], 2, 16)
    assert (out.done - out.admit).tolist() == [12, 8]
    # Same route at once: the second waits one serialisation on the first link, then follows.
    out = packets_on_mesh((4, 4), [((0, 0), (0, 2), 64, 0), ((0, 0), (0, 2), 64, 0)], 2, 16)
    assert (out.done - out.admit).tolist() == [8, 12]


def test_saturation_bound_is_the_busiest_link():
    for k in (3, 4, 5):
        load = {}
        grid = mesh.cells((k, k))
        for a, b in itertools.permutations(grid, 2):
            for link in mesh.xy_route(a, b):
                load[link] = load.get(link, 0) + 1 / (k * k - 1)     # per unit injection rate
        assert mesh.saturation_bound(k, 64, 16) == pytest.approx(1 / (4 * max(load.values())))
    assert mesh.saturation_bound(4, 64, 16) == pytest.approx(4 / (4 * 4) * 15 / 16)


@pytest.mark.parametrize("k,cycles", [(4, None), (8, 2000)])
def test_uniform_saturation_within_5_percent_of_bisection_bound(k, cycles):
    measured = mesh.saturation_throughput(k, 64, router_delay=2, width=16, cycles=cycles, tol=0.01)
    assert measured == pytest.approx(mesh.saturation_bound(k, 64, 16), rel=0.05)


# ---- the HRN on the mesh ------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    from simlib import small_export

    from hrn_hw.dataflow.workload import from_golden
    from hrn_hw.export.ir import QuantModel

    out = small_export()
    qm = QuantModel.load(out)
    return qm, from_golden(out, qm)


def random_routes(qm, n: int, seed: int = 0) -> Workload:
    """n routes of distinct initialised units, 0 to d long, random tasks."""
    rng = np.random.default_rng(seed)
    units = np.flatnonzero(qm.initialised)
    routes = np.full((n, qm.d), -1, dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(0, min(qm.d, len(units)) + 1))
        routes[i, :length] = rng.permutation(units)[:length]
    return Workload(routes, rng.integers(0, len(qm.heads), n), "random routes")


def manycore(**changes):
    arch = arch_mod.load("manycore")
    return arch.with_(**{"mesh": [4, 4], **changes})


def expected_latency(qm, arch, place, route, task):
    """A sample's latency on an idle chip, from the design: compute cycles plus zero-load packets."""
    core, noc = arch["core"], arch["noc"]
    s = int(qm.s)
    cell = lambda block: tuple(arch["io"]) if block == "io" else tuple(place[block][0])
    packet = lambda a, b, n: mesh.zero_load_latency(mesh.hops(cell(a), cell(b)), n, noc["router_delay"],
                                                    noc["link_bytes_per_cycle"])
    nb = lambda width: -(-width // 8)
    h, emb = s * nb(qm.h_fmt.width), s * nb(qm.emb_fmt.width)
    decision = h + qm.m * nb(qm.coef_fmt.width) + 1
    shape, width = tuple(qm.input_shape), 8
    units = [int(u) for u in route if u >= 0]
    total = packet("io", "hash", int(np.prod(shape)))
    for k in range(max(1, len(units))):
        total += service_cycles(core, *hash_work(qm, int(np.prod(shape)))) + packet("hash", "normaliser", 4 * s)
        total += service_cycles(core, *normaliser_work(qm)) + packet("normaliser", "projection", h)
        total += service_cycles(core, *projection_work(qm))
        if not units:
            total += packet("projection", "residue", 4)
            break
        total += packet("projection", "residue", decision) + service_cycles(core, *residue_work(qm))
        if k < len(units) - 1:
            u = f"unit{units[k]}"
            total += packet("residue", "hash", 4) + packet("hash", u, int(np.prod(shape)) * nb(width))
            total += service_cycles(core, *unit_work(qm, units[k], shape))
            shape = unit_out_shape(qm.units[units[k]], shape)
            width = qm.units[units[k]].out_fmt.width
            total += packet(u, "hash", int(np.prod(shape)) * nb(width))
    head = qm.heads[task].layers[-1].out_fmt.width
    return total + packet("residue", "head", emb) + service_cycles(core, *head_work(qm, task)) \
        + packet("head", "io", qm.max_classes * nb(head))


def test_idle_chip_latency_is_compute_plus_zero_load_packets(small):
    qm, _ = small
    work = random_routes(qm, 40)
    arch = manycore(in_flight=1)
    mapped = map_manycore(qm, work, arch, np.zeros(len(work), dtype=np.int64))
    out = run(mapped.problem)
    place = mapped.info["placement"]
    want = [expected_latency(qm, arch, place, r, int(t)) for r, t in zip(work.routes, work.tasks)]
    assert (out.done - out.admit).tolist() == want
    assert (out.done > 0).all() and (np.diff(out.admit) >= 0).all()
    assert mapped.in_flight == 1 and mapped.slot_bits == 0
    assert set(mapped.info) >= {"mesh", "io", "placement", "sram_bytes_used", "ops_note"}
    assert mapped.info["mesh"] == [4, 4] and mapped.info["io"] == [0, 0]
    assert set(mapped.server_kind) == {"core", "link"} and len(mapped.pools) == 16 + 48


def test_stream_finishes_every_sample_and_stays_within_utilisation(small):
    qm, work = small
    work = random_routes(qm, 300, seed=1)
    mapped = map_manycore(qm, work, manycore(in_flight=8), np.zeros(len(work), dtype=np.int64))
    out = run(mapped.problem)
    assert len(out.done) == len(work) and (out.done > out.admit).all()
    assert (out.busy <= out.done.max()).all()


def test_sram_overflow_is_one_line(small):
    qm, work = small
    with pytest.raises(ArchError) as err:
        map_manycore(qm, work, manycore(core={"sram_bytes": 4000}), np.zeros(len(work), dtype=np.int64))
    text = str(err.value)
    assert "\n" not in text and "core(" in text and "SRAM of 4000 B" in text and " B" in text


def test_mapping_errors(small):
    qm, work = small
    zeros = np.zeros(len(work), dtype=np.int64)
    cases = [(manycore(mesh=[2, 3]), "unit0 gets no core"),
             (manycore(replicas={"unit9": 2}), "replicas.unit9: no such unit"),
             (manycore(placement={"unit1": [[1, 1], [2, 2]]}, replicas={"unit1": 3}), "replicas.unit1 = 3"),
             (manycore(placement={"unit1": [[1, 1], [1, 1]]}), "placed twice"),
             (manycore(placement={"unit9": [[1, 1]]}), "no such unit"),
             (manycore(mesh=[2, 4], replicas={"unit1": 3}), "unit1 gets 1 of its 3 copies")]
    for arch, message in cases:
        with pytest.raises(ArchError, match=message) as err:
            map_manycore(qm, work, arch, zeros)
        assert "\n" not in str(err.value)
    with pytest.raises(ArchError, match="io is fixed"):
        map_manycore(qm, work, manycore(), zeros, placement={"io": [1, 1]})
    shared = map_manycore(qm, work, manycore(placement={"hash": [[1, 1]], "normaliser": [[1, 1]]}), zeros)
    assert shared.info["placement"]["hash"] == shared.info["placement"]["normaliser"] == [[1, 1]]


def unit_cores(mapped, unit: str) -> list:
    """Per sample, the core of its `unit` job ("" when it has none)."""
    labels, pools = mapped.job_labels, mapped.problem.job_pool
    starts = mapped.problem.chain_start
    per_class = []
    for c, chain in enumerate(labels):
        hit = [mapped.pools[pools[starts[c] + j]] for j, label in enumerate(chain) if label == unit]
        per_class.append(hit[0] if hit else "")
    return [per_class[c] for c in mapped.problem.sample_class]


def test_replicas_take_turns_in_sample_order(small):
    qm, golden = small
    zeros = lambda w: np.zeros(len(w), dtype=np.int64)
    mapped = map_manycore(qm, golden, manycore(replicas={"unit1": 3}), zeros(golden))
    cores = [c for c in unit_cores(mapped, "unit1") if c]
    copies = [f"core({r},{c})" for r, c in mapped.info["placement"]["unit1"]]
    runs_unit1 = [(r[:np.count_nonzero(r >= 0) - 1] == 1).any() for r in golden.routes]
    assert len(cores) == sum(runs_unit1) > 3 and cores == [copies[i % 3] for i in range(len(cores))]
    work = random_routes(qm, 200, seed=2)
    mapped = map_manycore(qm, work, manycore(replicas={"unit2": 2}), zeros(work))
    cores = [c for c in unit_cores(mapped, "unit2") if c]
    copies = [f"core({r},{c})" for r, c in mapped.info["placement"]["unit2"]]
    assert 0 < len(cores) < len(work) and cores == [copies[i % 2] for i in range(len(cores))]


def test_a_replicated_router_block_keeps_each_sample_on_one_copy(small):
    """hash and residue copies hold a sample's map and embedding: every visit of a sample goes
    to the same copy, and samples take the copies in turn."""
    qm, golden = small
    mapped = map_manycore(qm, golden, manycore(replicas={"hash": 2, "residue": 3}), np.zeros(len(golden), np.int64))
    pb = mapped.problem
    for block, n in (("hash", 2), ("residue", 3)):
        copies = [f"core({r},{c})" for r, c in mapped.info["placement"][block]]
        used = []
        for i, c in enumerate(pb.sample_class):
            lo = pb.chain_start[c]
            cores = {mapped.pools[pb.job_pool[lo + j]] for j, lab in enumerate(mapped.job_labels[c]) if lab == block}
            assert len(cores) == 1
            used.append(cores.pop())
        assert used == [copies[i % n] for i in range(len(used))]


def test_transition_graph_and_traffic(small):
    qm, _ = small
    work = random_routes(qm, 120, seed=3)
    graph = transition_graph(qm, work)
    assert sum(w for _, _, w in graph.out_edges("input", data="weight")) == len(work)
    assert sum(w for _, _, w in graph.in_edges("head", data="weight")) == len(work)
    assert all(b > 0 for _, _, b in graph.edges(data="bytes"))
    flows = traffic(qm, work)
    assert flows[("io", "hash")] == int(np.prod(qm.input_shape))
    assert flows[("hash", "normaliser")] == 4 * qm.s * np.mean(np.maximum(1, work.route_lengths()))


def test_optimise_never_worsens_the_objective(small):
    qm, _ = small
    work = random_routes(qm, 200, seed=4)
    arch = manycore(placement={"head": [[3, 3]]})
    place, report = optimise(qm, work, arch, core_budget=12)
    assert report["objective_after"] <= report["objective_before"]
    assert report["objective_after"] == pytest.approx(objective(traffic(qm, work), place))
    assert place["io"] == [(0, 0)] and place["head"] == [(3, 3)]
    cells = [c for b, v in place.items() if b != "io" for c in v]
    assert len(cells) == len(set(cells)) == report["cores_used"] <= 12
    assert all(0 <= r < 4 and 0 <= c < 4 for r, c in cells) and (0, 0) not in cells
    assert optimise(qm, work, arch, core_budget=12) == (place, report)
    mapped = map_manycore(qm, work, arch, np.zeros(len(work), dtype=np.int64), placement=place)
    assert len(run(mapped.problem).done) == len(work)
