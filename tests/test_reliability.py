"""The reliability suite (bench/reliability.py) in its quick form: kill -9 at every write step and at
random moments (full, incremental and compaction writes), torn reads, two writers, injections, loader
and HTTP fuzzing, review-room writes without a key. ``make reliability`` runs the full rounds and prints
the figures for the README."""
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SUITE = Path(__file__).resolve().parent.parent / "bench" / "reliability.py"


def test_the_quick_suite_finds_no_problem():
    spec = importlib.util.spec_from_file_location("reliability", SUITE)
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    result = suite.run(quick=True)
    print(result["figures"])
    assert result["problems"] == []
    figures = result["figures"]
    for mode in suite.MODES:  # one segment rebuilt, a segment added with tombstones, a compaction
        assert figures[f"kill -9 at each step of a {mode} write: survived"] == f"{len(suite.STEPS)}/{len(suite.STEPS)}"
    assert figures["injections followed"].startswith("0/")
