"""The package stands on its own: its modules import one another without cycles (module-level
and deferred imports alike), the reference HRN lives inside it, and no module reaches into the
tests or the sim/ testbenches."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import hrn_hw

PACKAGE = Path(hrn_hw.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module name an import statement of `path` names (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def import_graph() -> nx.DiGraph:
    """Module -> the package modules it imports (a name resolves to its longest module prefix)."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    return graph


def test_no_import_cycles():
    cycles = sorted(nx.simple_cycles(import_graph()), key=len)
    assert not cycles, f"{len(cycles)} import cycle(s), e.g. {' -> '.join(cycles[0] + cycles[0][:1])}"


def test_reference_is_inside_and_nothing_imports_tests():
    graph = import_graph()
    assert "hrn_hw.reference.hrn" in graph
    for name, path in _modules().items():
        outside = {t.split(".")[0] for t in _imports(name, path)} & {"reference", "tests", "sim", "conftest"}
        assert not outside, f"{name} imports {outside}"
        text = path.read_text()
        assert "test_top" not in text or name == "hrn_hw.rtl.cocotb_top", f"{name} loads a test module"


def test_export_knob_options_come_from_the_knob_definitions():
    """hrn-hw export has one option per RtlKnobs field (hrn_hw.rtl.knobs.knob_flags), no more."""
    import argparse
    from dataclasses import fields

    from hrn_hw.cli import build_parser
    from hrn_hw.rtl.knobs import RtlKnobs, knob_flags

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["export"]
    flags = {o for a in sub._actions for o in a.option_strings}
    assert [name for name, _, _ in knob_flags()] == [f.name for f in fields(RtlKnobs)]
    assert {flag for _, flag, _ in knob_flags()} <= flags


def test_cli_reference_lists_every_command_and_option():
    """docs/cli.md (benchmarks/write_cli_doc.py) names every command and option of the parser."""
    import argparse

    from hrn_hw.cli import build_parser

    text = (PACKAGE.parent / "docs" / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"## hrn-hw {name}" in text, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text or f", {flag}" in text, f"{name} {flag}"
