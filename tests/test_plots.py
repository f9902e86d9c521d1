"""`hrn-hw plot`: a PNG from a results JSON; bad files exit 2 with one line."""

import json

import pytest

from hrn_hw.cli import main

RESULTS = {"scenario": "pairwise-mnist", "tasks": ["a", "b"], "accuracy_matrix": [[0.99], [0.97, 0.98]],
           "global_accuracy": [0.99, 0.975], "unit_usage": [{"test_unit_visits": [10, 0, 5]},
                                                          {"test_unit_visits": [3, 7, 5]}]}


def test_plot_writes_png(tmp_path, capsys):
    src = tmp_path / "r.json"
    src.write_text(json.dumps(RESULTS))
    assert main(["plot", str(src)]) == 0
    png = tmp_path / "r.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out


def _png_width(path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_plot_shows_route_changes_of_an_hrn_run(tmp_path):
    """An HRN run's plot gains a panel: the share of each earlier task's test images re-routed."""
    plain, routed = tmp_path / "a.json", tmp_path / "b.json"
    plain.write_text(json.dumps(RESULTS))
    routed.write_text(json.dumps({**RESULTS, "route_changes": [[0.0], [0.12, 0.0]]}))
    assert main(["plot", str(plain)]) == 0 and main(["plot", str(routed)]) == 0
    assert _png_width(tmp_path / "b.png") > 1.3 * _png_width(tmp_path / "a.png")


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "{}", '{"accuracy_matrix": "abc"}',
                                  '{"accuracy_matrix": [[1, 2], "x"]}',
                                  '{"accuracy_matrix": [[1]], "route_changes": [["x"]]}'])
def test_plot_rejects_bad_results(tmp_path, capsys, text):
    src = tmp_path / "bad.json"
    src.write_text(text)
    assert main(["plot", str(src), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hrn-hw: error:")
    assert not (tmp_path / "o.png").exists()


def test_plot_missing_file(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none.json")]) == 2
    assert "no such results file" in capsys.readouterr().err
