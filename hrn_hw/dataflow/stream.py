"""The throughput model of the pipelined top level: when each sample of a stream enters and
leaves (docs/rtl.md "Samples in flight").

One definition of the timing: the jobs are `hrn_hw.rtl.latency.pipelined_ops`, run by the
dataflow simulator's event engine on the `fpga-pipelined` architecture built from the RTL's own
knobs (samples in flight, replicas, queues that never fill: a queue holds slot ids, at most
`in_flight` of them). The RTL testbench requires every sample's measured cycles to equal these.
"""

from __future__ import annotations

import numpy as np

from hrn_hw.dataflow import arch as archs
from hrn_hw.dataflow.fpga import map_fpga
from hrn_hw.dataflow.native import run as run_engine
from hrn_hw.dataflow.workload import Workload
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.latency import resolve_knobs


def knob_arch(knobs: RtlKnobs, clock_mhz: float = 200.0) -> archs.Arch:
    """The `fpga-pipelined` architecture of the pipelined top level with `knobs`."""
    return archs.from_dict({"kind": "fpga-pipelined", "clock_mhz": clock_mhz, "in_flight": knobs.in_flight,
                            "fifo_depth": "unbounded", "replicas": dict(knobs.replicas),
                            "knobs": knobs.to_dict()}, "rtl-pipelined", "<the RTL's knobs>")


def stream_schedule(qm, routes, tasks, knobs: RtlKnobs, engine: str = "auto") -> dict:
    """Per sample of a back-to-back stream (routes [N, d], tasks [N]): `start`, the cycle its
    input job starts (its slot taken), and `done`, the cycle after its last logit; cycle 0 is
    the first sample's start. Also `interval` (done of the last over N) and `latency` (done -
    start)."""
    if knobs.in_flight < 2:
        raise ValueError("stream_schedule models the pipelined top level (in_flight >= 2)")
    knobs = resolve_knobs(qm, knobs, routes, tasks)          # replicas "auto": chosen from these routes
    work = Workload(np.asarray(routes), np.asarray(tasks), "stream")
    n = len(work)
    mapped = map_fpga(qm, work, knob_arch(knobs), knobs, np.zeros(n, dtype=np.int64), trace_samples=n)
    out = run_engine(mapped.problem, engine)
    first = out.trace[out.trace[:, 1] == 0]
    start = np.zeros(n, dtype=np.int64)
    start[first[:, 0]] = first[:, 3]
    done = out.done.astype(np.int64)
    return {"start": start, "done": done, "latency": done - start,
            "interval": float(done.max()) / n if n else 0.0}
