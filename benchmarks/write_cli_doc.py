"""Write docs/cli.md, the command-line reference, from hrn-hw's argument parser (run after
changing an option; tests/test_package.py checks that every option is listed there).

    PYTHONPATH=. .venv/bin/python benchmarks/write_cli_doc.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrn_hw.cli import build_parser


def cli_reference() -> str:
    """The Markdown reference: per command, its help line, usage and an option table."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    lines = ["# Command-line reference", "",
             "Every `hrn-hw` command and option, generated from the argument parser by",
             "`benchmarks/write_cli_doc.py` (`tests/test_package.py` checks that every option is listed",
             "here). `hrn-hw COMMAND --help` prints the same.", ""]
    for name, command in sub.choices.items():
        usage = " ".join(command.format_usage().replace("usage: ", "").split())
        lines += [f"## hrn-hw {name}", "", helps.get(name) or "", "", f"    {usage}", ""]
        rows = [f"| `{', '.join(a.option_strings) or a.dest}` | {(a.help or '').replace('|', chr(92) + '|')} |"
                for a in command._actions if not isinstance(a, argparse._HelpAction)]
        if rows:
            lines += ["| option | meaning |", "|---|---|", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    out.write_text(cli_reference())
    print(f"written {out}")
