"""NIfTI files whose qform and sform disagree: reported, the choice named, outputs repeat both."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import medseg
from medseg.errors import InputWarning


def _conflicting(path: Path, sform_code: int = 1, qform_code: int = 1) -> Path:
    data = np.zeros((20, 20, 10), np.int16)
    data[5:10, 5:10, 3:6] = 100
    sform = np.diag([1.5, 1.5, 3.0, 1.0])
    sform[:3, 3] = [-10, -20, 5]
    qform = sform.copy()
    qform[0, 0], qform[0, 3] = -1.5, 170.0  # mirrored in x, ~180 mm away
    img = nib.Nifti1Image(data, sform)
    img.set_sform(sform, code=sform_code)
    img.set_qform(qform, code=qform_code)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("sform_code", [1, 2])
def test_conflict_is_reported_and_the_mask_repeats_both_transforms(tmp_path: Path, sform_code: int) -> None:
    src = _conflicting(tmp_path / "t1.nii.gz", sform_code=sform_code)
    with pytest.warns(InputWarning, match=r"qform and sform disagree \(up to 180.0 mm.*medseg uses the sform"):
        image = medseg.read(src)
    assert np.allclose(image.affine, nib.load(src).get_sform())
    mask = image.replace(array=(image.numpy() > 0).astype(np.uint8), kind="label")
    medseg.write(mask, tmp_path / "mask.nii.gz")
    a, b = nib.load(src).header, nib.load(tmp_path / "mask.nii.gz").header
    for coded in ("get_qform", "get_sform"):
        (xa, ca), (xb, cb) = getattr(a, coded)(coded=True), getattr(b, coded)(coded=True)
        assert np.allclose(xa, xb) and int(ca) == int(cb)
    # whichever transform a viewer trusts, it trusts the same one for both files
    ia, ib = sitk.ReadImage(str(src)), sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    assert np.allclose(ia.GetOrigin(), ib.GetOrigin()) and np.allclose(ia.GetDirection(), ib.GetDirection())


def test_agreeing_transforms_are_silent_and_a_resampled_volume_gets_its_own(tmp_path: Path, recwarn) -> None:
    image = medseg.Volume(np.ones((1, 8, 8, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    medseg.write(image, tmp_path / "a.nii.gz")
    again = medseg.read(tmp_path / "a.nii.gz")
    assert not [w for w in recwarn if issubclass(w.category, InputWarning)]
    moved = again.replace(affine=np.diag([1.0, 1.0, 1.0, 1.0]))  # another grid: its own affine in both forms
    medseg.write(moved, tmp_path / "b.nii.gz")
    h = nib.load(tmp_path / "b.nii.gz").header
    assert np.allclose(h.get_qform(), np.eye(4)) and np.allclose(h.get_sform(), np.eye(4))
