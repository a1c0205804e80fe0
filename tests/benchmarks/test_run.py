"""Smoke test of ``benchmarks/run.py``: a tiny CT end to end and the single stages, table and results written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_quick_writes_table_and_results(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\nHand-written notes stay.\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--size",
            "64,64,32",
            "--quick",
            "--sections",
            "e2e,stages",
            "--out",
            str(tmp_path / "out"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| **total [s]** |" in proc.stdout
    text = results.read_text()
    assert "Hand-written notes stay." in text
    assert text.count("<!-- run:start -->") == 1
    assert "End-to-end inference: (64, 64, 32) CT" in text
    assert "connected components" in text
    assert "Command: `python benchmarks/run.py --size 64,64,32 --quick" in text

    raw = json.loads((tmp_path / "out" / "results.json").read_text())
    e2e = raw["e2e"]
    for method in ("medseg", "monai"):
        r = e2e[method]
        assert r["total_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["windows"] >= 1
        assert e2e["same_grid"][method], f"{method} output is not on the input grid"
    assert set(e2e["agreement_dice"]) == {"liver", "spleen", "kidney_left", "lesion"}
    stages = raw["stages"]
    assert stages["cc_same_scipy"] and stages["cc_same_monai"]
    assert stages["pre_medseg_s"] > 0 and stages["post_medseg_s"] > 0


def test_update_section_replaces_only_its_block(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import update_section

    path = tmp_path / "R.md"
    update_section(path, "run", "first")
    update_section(path, "accuracy", "acc")
    update_section(path, "run", "second")
    text = path.read_text()
    assert "second" in text and "first" not in text and "acc" in text
    assert text.index("<!-- run:start -->") < text.index("<!-- accuracy:start -->")
