"""Property test (issue 19): every small random config the validator accepts trains a few
batches on real images, routes alike on the batched and oracle paths, exports, and its golden
model equals its C simulation bit for bit; a config it refuses gets one line. A few examples
here (derandomised, so every run draws the same configs); `make fuzz` draws HRN_FUZZ_EXAMPLES
(200) fresh ones; sim/test_fuzz_rtl.py checks golden == RTL too (`make sim`)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings

from fuzz_configs import check_routes, configs, describe, export_and_verify, train_config

EXAMPLES = int(os.environ.get("HRN_FUZZ_EXAMPLES", "3"))
FRESH = "HRN_FUZZ_EXAMPLES" in os.environ          # make fuzz: new configs every run


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not FRESH, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=configs())
def test_random_config_trains_exports_and_verifies(data, tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("fuzz")
    note = describe(data)
    checkpoint = train_config(data, folder, monkeypatch)
    print(f"\nfuzz: {note}: {'refused' if checkpoint is None else 'trained'}", flush=True)   # (pytest -s)
    if checkpoint is None:
        return                                          # refused in one line (checked)
    check_routes(checkpoint)
    export_and_verify(checkpoint, folder / "export")
