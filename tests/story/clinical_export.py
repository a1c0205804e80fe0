"""A small clinical DICOM export as a planning system would leave it: CT series, RTSTRUCTs written by plastimatch.

ROI names vary in case and spelling across patients and one patient lacks the tumour ROI, as in real exports.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

import medseg
from medseg.core import Volume
from medseg.data import ct_phantom
from medseg.data.dicom_series import write_series

PLASTIMATCH = shutil.which("plastimatch")
SHAPE, SPACING = (40, 36, 14), (1.5, 1.5, 3.0)
#: per training patient, the ROI names of the liver (label 1) and of the tumour (label 2), None = not contoured
TRAINING = {
    "PAT0": ("Liver", "GTV"),
    "PAT1": ("LIVER", "gtv_1"),
    "PAT2": ("liver_final", "GTV"),
    "PAT3": ("Liver", None),
}
LABELS_YAML = '1: [liver, Liver, "LIVER*", "liver_*"]\n2: [tumour, GTV, "GTV*", "gtv*"]\n'


def plastimatch_rtstruct(masks: dict[str, np.ndarray], ct: Volume, ct_folder: Path, out: Path) -> Path:
    """Write one RTSTRUCT for ``masks`` (ROI name → boolean (X, Y, Z) mask on ``ct``'s grid) with plastimatch."""
    staging = out.parent / f".{out.name}-masks"
    staging.mkdir(parents=True)
    for name, mask in masks.items():
        medseg.write(Volume(mask.astype(np.uint8)[None], ct.affine, kind="label"), staging / f"{name}.nrrd")
    run = subprocess.run(
        [PLASTIMATCH, "convert", "--input-prefix", str(staging), "--referenced-ct", str(ct_folder),
         "--output-dicom", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(run.stdout + run.stderr)
    shutil.rmtree(staging)
    (rtss,) = out.glob("rtss*.dcm")
    for other in out.glob("*.dcm"):  # plastimatch also rewrites the CT; only the structure set is the export's
        if other != rtss:
            other.unlink()
    return rtss


def write_export(root: Path) -> dict[str, np.ndarray]:
    """``root/export/PATn/{CT,RS}`` for the training patients and ``root/heldout/PAT9/CT`` with its truth
    ``root/truth/PAT9.nii.gz`` (labels 1 liver, 2 tumour). Returns the truth label map of every patient."""
    truths = {}
    for i, patient in enumerate([*TRAINING, "PAT9"]):
        image, label = ct_phantom(SHAPE, SPACING, seed=i)
        lab = label.numpy()[0]
        truth = np.select([lab == 1, lab == 2], [1, 2], 0).astype(np.uint8)  # the phantom's second organ plays the GTV
        truths[patient] = truth
        where = root / ("heldout" if patient == "PAT9" else "export") / patient
        write_series(image, where / "CT", patient_id=patient, rescale_intercept=-1024)
        ct = medseg.read(where / "CT")
        if patient == "PAT9":
            medseg.write(Volume(truth[None], ct.affine, kind="label"), root / "truth" / f"{patient}.nii.gz")
            continue
        liver, tumour = TRAINING[patient]
        masks = {liver: truth == 1} | ({tumour: truth == 2} if tumour else {})
        plastimatch_rtstruct(masks, ct, where / "CT", where / "RS")
    return truths
