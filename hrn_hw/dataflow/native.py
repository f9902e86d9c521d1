"""Compiled twin of the event engine (placeholder: runs the Python engine until the twin lands)."""

from __future__ import annotations

from hrn_hw.dataflow import engine


def run(problem: engine.Problem, prefer: str = "auto") -> engine.Outcome:
    """Simulate `problem` (the compiled engine where built, else the Python one)."""
    return engine.simulate(problem)
