"""The README's main command, end to end on sample_data/ with the shipped checkpoint (the golden test)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import medseg
from tests.conftest import SAMPLE


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    assert (SAMPLE / "checkpoints" / "brain_mask_mr.pt").is_file(), "the demo checkpoint ships in sample_data/"
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "demo", "-o", str(out)], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    dice = float(re.search(r"brain Dice = ([0-9.]+)", r.stdout).group(1))
    assert dice >= 0.90, r.stdout  # the shipped model on a re-gridded copy of its training subject
    # the PD-weighted DICOM through the T1 model is not reported without a word
    qc = dict(re.findall(r"  (colin27_lps|mr_dicom_pd): qc_score ([0-9.]+)", r.stdout))
    assert float(qc["colin27_lps"]) < 0.5 <= float(qc["mr_dicom_pd"]), r.stdout
    assert "T1 foreground intensity" in r.stdout.split("mr_dicom_pd: qc_score")[1], r.stdout
    pred_dir = out / "predictions"
    for case, source in [("colin27_lps", out / "heldout" / "colin27_lps.nii.gz"), ("mr_dicom_pd", SAMPLE / "mr_dicom")]:
        image = medseg.read(source)
        mask = medseg.read(pred_dir / f"{case}.nii.gz")
        assert mask.spatial_shape == image.spatial_shape
        assert np.allclose(mask.affine, image.affine, atol=1e-4)  # on the input's own grid (LPS / oblique DICOM)
        for suffix in (".png", "_stats.csv", ".provenance.json"):
            assert any(p.name.startswith(case) and p.name.endswith(suffix) for p in pred_dir.iterdir()), (case, suffix)
        assert any(p.suffix == ".stl" and p.name.startswith(case) for p in pred_dir.rglob("*")), case
        assert str(pred_dir / f"{case}.nii.gz") in r.stdout  # the demo says where every output is
