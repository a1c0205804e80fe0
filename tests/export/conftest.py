"""Fixtures for export tests: a CT phantom case with its label map."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.core import Volume
from medseg.data import ct_phantom

PHANTOM_LABELS = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "lesion"}


@pytest.fixture
def phantom() -> tuple[Volume, Volume]:
    """(image int16 HU, label uint8 1..4) on an anisotropic RAS grid, 32×28×12."""
    image, label = ct_phantom((32, 28, 12), (1.2, 1.1, 3.0))
    return image.replace(meta={**image.meta, "modality": "CT"}), label.replace(kind="label")


def sphere_mask(shape, spacing, center_mm, radius_mm) -> np.ndarray:
    """Boolean ``(X, Y, Z)`` ball of ``radius_mm`` around ``center_mm`` (index-space mm)."""
    idx = np.indices(shape).astype(float)
    d2 = sum(((idx[k] * spacing[k]) - center_mm[k]) ** 2 for k in range(3))
    return d2 <= radius_mm**2


#: What de-identification tools commonly delete from the Patient, General Study and Frame of Reference modules.
ANONYMISED_AWAY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "PositionReferenceIndicator",
)


@pytest.fixture
def anonymised_case(tmp_path):
    """A synthetic CT series whose files lack every type-2 attribute of :data:`ANONYMISED_AWAY`, read back,
    and the phantom label map on its grid."""
    import pydicom

    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series
    from medseg.io import read

    image, label = ct_phantom((32, 28, 12), (1.2, 1.1, 3.0))
    for path in write_series(image, tmp_path / "anonymised", rescale_intercept=-1024):
        ds = pydicom.dcmread(path)
        for name in ANONYMISED_AWAY:
            del ds[name]
        ds.save_as(path)
    ref = read(tmp_path / "anonymised")
    return ref, Volume(label.numpy(), ref.affine, kind="label")
