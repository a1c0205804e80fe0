"""The CLI on bad inputs: exit status 1, one line on stderr naming the file, no traceback, nothing written.

The commands run as subprocesses (``python -m medseg.cli``), all started at once to keep
the suite fast on two cores.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.robustness.conftest import PYDICOM_FILES, assert_empty
from tests.robustness.test_security import tiny_pipeline


def _inputs(root: Path) -> dict[str, Path]:
    root.mkdir()
    truncated = root / "truncated.nii.gz"
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 16)).astype(np.float32), np.eye(4)), str(truncated)
    )
    truncated.write_bytes(truncated.read_bytes()[:-2000])
    five_d = root / "five_d.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2, 2), np.float32), np.eye(4)), str(five_d))
    bad_dicom = root / "bad_dicom"
    bad_dicom.mkdir()
    shutil.copy(PYDICOM_FILES / "badVR.dcm", bad_dicom / "x.dcm")
    tabs = root / "tabs.yaml"
    tabs.write_text("name: x\npreprocess:\n\t- reorient: {}\n")
    typo = root / "typo.yaml"
    typo.write_text("name: x\nnetwork: {name: unet, optoins: {}}\n")
    good = tiny_pipeline(root)
    missing_ckpt = root / "missing_ckpt.yaml"
    missing_ckpt.write_text(good.read_text().replace("tiny.pt", "gone.pt"))
    other_labels = root / "other_labels.yaml"
    other_labels.write_text(good.read_text().replace("{1: liver}", "{1: liver, 2: spleen}"))
    image = root / "image.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), str(image))
    return {
        "truncated": truncated,
        "five_d": five_d,
        "bad_dicom": bad_dicom,
        "tabs": tabs,
        "typo": typo,
        "missing_ckpt": missing_ckpt,
        "other_labels": other_labels,
        "image": image,
    }


#: id → (arguments with {placeholders}, fragments stderr must contain, output folder that must stay empty)
CASES: dict[str, tuple[list[str], tuple[str, ...], str | None]] = {
    "info_truncated": (["info", "{truncated}"], ("truncated.nii.gz", "truncated or corrupt"), None),
    "info_5d": (["info", "{five_d}"], ("five_d.nii", "5D"), None),
    "info_missing": (["info", "{root}/nowhere.nii"], ("nowhere.nii", "no such file"), None),
    "info_bad_dicom": (["info", "--json", "{bad_dicom}"], ("bad_dicom", "none is readable"), None),
    "validate_tabs": (["validate", "{tabs}"], ("tabs.yaml", "tabs"), None),
    "validate_typo": (["validate", "{typo}"], ("typo.yaml", "optoins"), None),
    "predict_missing_checkpoint": (
        ["predict", "{missing_ckpt}", "-i", "{image}", "-o", "{root}/out_missing", "--device", "cpu", "-q"],
        ("gone.pt",),
        "out_missing",
    ),
    "predict_other_labels": (
        ["predict", "{other_labels}", "-i", "{image}", "-o", "{root}/out_labels", "--device", "cpu", "-q"],
        ("tiny.pt", "saved for labels"),
        "out_labels",
    ),
    "predict_truncated_input": (
        ["predict", "{root}/tiny.yaml", "-i", "{truncated}", "-o", "{root}/out_trunc", "--device", "cpu", "-q"],
        ("truncated.nii.gz",),
        None,
    ),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    root = tmp_path_factory.mktemp("cli") / "in"
    paths = {k: str(v) for k, v in _inputs(root).items()}
    procs = {}
    for name, (args, _, _) in CASES.items():
        argv = [a.format(root=root, **paths) for a in args]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "medseg.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        done[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), root)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(CASES) - {"predict_truncated_input"}))
def test_cli_error_is_one_line(case: str, cli_runs) -> None:
    proc, root = cli_runs[case]
    _, fragments, out = CASES[case]
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n" + "\n".join(lines[:10])
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    if out is not None:
        assert_empty(root / out)


@pytest.mark.slow
def test_cli_predict_on_a_corrupt_case_reports_it_and_writes_no_mask(cli_runs) -> None:
    """A batch-level failure of one case: exit 1, the case named, no mask written under the case's name."""
    proc, root = cli_runs["predict_truncated_input"]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "truncated.nii.gz" in proc.stderr
    out = root / "out_trunc"
    masks = [p for p in out.rglob("*.nii.gz")] if out.exists() else []
    assert not masks, masks
