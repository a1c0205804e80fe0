"""The README's command-line and Python sections work when copied literally (run after the demo, as it says)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV = ROOT / ".venv"


def block(heading: str, language: str) -> str:
    """The first fenced ``language`` block after the ``## heading`` line."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    m = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert m, f"no {language} block under '## {heading}'"
    return m.group(1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A working folder that looks like the repository root after 'medseg demo'."""
    if not (VENV / "bin" / "activate").exists() or Path(sys.prefix).resolve() != VENV.resolve():
        pytest.skip("runs where the README's set-up made .venv (CI does)")
    root = tmp_path_factory.mktemp("checkout")
    for name in ("sample_data", "pipelines", ".venv"):
        (root / name).symlink_to(ROOT / name)
    demo = subprocess.run([".venv/bin/medseg", "demo"], cwd=root, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr[-3000:]
    return root


@pytest.mark.slow
def test_command_line_section(checkout: Path) -> None:
    script = "set -euo pipefail\n" + block("Command line", "bash")
    res = subprocess.run(["bash", "-c", script], cwd=checkout, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (checkout / "predictions" / "colin27_lps.seg.nrrd").exists()
    assert "label 1 (brain): dice" in res.stdout
    assert (checkout / "exports" / "colin27_lps_brain.stl").exists()
    assert (checkout / "exports" / "colin27_lps_viewer.html").exists()


@pytest.mark.slow
def test_python_section(checkout: Path) -> None:
    res = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", block("Python", "python")],
        cwd=checkout, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (checkout / "colin27_lps_mask.nii.gz").exists()


def test_setup_section_is_what_ci_runs() -> None:
    setup = block("Set-up: two commands", "bash")
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in setup.splitlines() if "pytest" in line).split("#")[0].strip()
    assert test_command in ci
