"""The radiotherapy team's story, end to end, as a reviewer can read it.

A multi-patient planning-system export (CT series + RTSTRUCTs written by plastimatch, ROI names varying in case
and spelling, one patient without the tumour ROI) → ``medseg info`` → ``medseg plan --labels`` →
``medseg train --fold all`` → ``medseg predict`` on a held-out DICOM series → ``medseg export --format
rtstruct,dicom-seg`` → dciodvfy finds no error → plastimatch rasterises the RTSTRUCT back to the predicted mask →
``medseg evaluate`` against the truth.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medseg

from .clinical_export import LABELS_YAML, PLASTIMATCH, write_export

DCIODVFY = shutil.which("dciodvfy")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PLASTIMATCH is None, reason="plastimatch not installed (apt-get install plastimatch)"),
    pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (apt-get install dicom3tools)"),
]


def medseg_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "medseg.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, f"medseg {' '.join(args)}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if not a.any() and not b.any() else 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_from_a_planning_system_export_to_a_cross_validated_model_and_back(tmp_path: Path) -> None:
    write_export(tmp_path)  # export/PAT0..PAT3/{CT,RS}, heldout/PAT9/CT, truth/PAT9.nii.gz
    (tmp_path / "labels.yaml").write_text(LABELS_YAML)

    # 1. what is in the export: the CT series, and the RTSTRUCT with the ROI names this patient's planner used
    listing = medseg_cli("info", "export/PAT1", cwd=tmp_path).stdout
    assert "(patient PAT1, folder CT)" in listing and "RTSTRUCT" in listing and "'LIVER', 'gtv_1'" in listing

    # 2. plan it: without --labels medseg lists the ROI names found; with them it plans
    bare = subprocess.run([sys.executable, "-m", "medseg.cli", "plan", "export", "-o", "plan", "--no-probe"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bare.returncode == 1 and "ROIs found: GTV (2 patients), Liver (2), LIVER (1)" in bare.stderr
    medseg_cli("plan", "export", "-o", "plan", "--no-probe", "--labels", "labels.yaml", "--folds", "2", cwd=tmp_path)

    # 3. cross-validated training; the patient without the tumour ROI is left out with a line saying why
    medseg_cli("train", "plan/pipeline.yaml", "--data", "export", "-o", "runs", "--fold", "all", "--folds", "2",
               "--max-time", "10s", cwd=tmp_path)  # fmt: skip
    skipped = (tmp_path / "runs" / "skipped_cases.txt").read_text()
    assert skipped.startswith("PAT3:") and "no ROI matches label 2" in skipped
    assert (tmp_path / "runs" / "final_pipeline.yaml").is_file()
    for fold in ("fold_0", "fold_1"):
        ran = json.loads((tmp_path / "runs" / fold / "metrics.json").read_text())
        assert ran["stopped_by"] == "time limit" and ran["iterations"] >= 1  # the record says what ran

    # 4. predict the held-out patient's series (named by its PatientID), then export for the planning system
    medseg_cli("predict", "runs/final_pipeline.yaml", "-i", "heldout/PAT9/CT", "-o", "pred", "--no-tta", "-q",
               cwd=tmp_path)  # fmt: skip
    predicted = medseg.read(tmp_path / "pred" / "PAT9.nii.gz")
    ct = medseg.read(tmp_path / "heldout" / "PAT9" / "CT")
    assert predicted.grid.matches(ct.grid)  # on the CT's own grid
    medseg_cli("export", "pred/PAT9.nii.gz", "--reference", "heldout/PAT9/CT", "--format", "rtstruct,dicom-seg",
               "-o", "exports", cwd=tmp_path)  # fmt: skip
    rtstruct, seg = tmp_path / "exports" / "PAT9.rtstruct.dcm", tmp_path / "exports" / "PAT9.seg.dcm"
    for path in (rtstruct, seg):
        check = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"

    # 5. an independent reader (plastimatch) rasterises the RTSTRUCT back to what medseg predicted
    run = subprocess.run(
        [PLASTIMATCH, "convert", "--input", str(rtstruct), "--referenced-ct", str(tmp_path / "heldout" / "PAT9" / "CT"),
         "--output-prefix", str(tmp_path / "pm")],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    mask = predicted.numpy()[0]
    for value, name in ((1, "liver"), (2, "tumour")):
        theirs = medseg.read(tmp_path / "pm" / f"{name}.mha")
        assert theirs.grid.matches(ct.grid, atol=1e-3)
        assert dice(theirs.numpy()[0] > 0, mask == value) >= 0.97, name

    # 6. scored against the truth: the pairing goes by the patient, the labels by their names
    out = medseg_cli("evaluate", "--pred", "pred", "--gt", "truth", "-o", "eval.csv", cwd=tmp_path).stdout
    assert "label 1 (liver): dice" in out and "label 2 (tumour): dice" in out
    assert (tmp_path / "eval.csv").read_text().count("PAT9") == 2
