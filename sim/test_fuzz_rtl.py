"""The RTL variant of the config property test (tests/test_config_fuzz.py; `make sim`): a few
random small configs the validator accepts train, export with their RTL, and golden == C-sim ==
RTL bit for bit (and the cycle model == the RTL's cycles). HRN_FUZZ_RTL_EXAMPLES (default 2)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_configs import check_routes, configs, export_and_verify, train_config  # noqa: E402

EXAMPLES = int(os.environ.get("HRN_FUZZ_RTL_EXAMPLES", "2"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=configs())
def test_random_config_golden_equals_csim_and_rtl(data, tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("fuzz_rtl")
    checkpoint = train_config(data, folder, monkeypatch)
    if checkpoint is None:
        return
    check_routes(checkpoint)
    export_and_verify(checkpoint, folder / "export", against=("csim", "rtl"))
