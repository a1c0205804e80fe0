"""Held-out cases cut from the real labelled Colin27 head of ``sample_data/`` (the accuracy study's real task).

Colin27 is one subject, so the only held-out split it allows is spatial: training cases are
cut from the left hemisphere (world x < 0 mm), test cases from the right one (x > 0 mm); the
mid-sagittal plane x = 0 belongs to neither. Each case is its hemisphere re-gridded by
SimpleITK (independently of medseg) with a seeded rotation (up to 10° about each axis),
spacing (1.2–2.2 mm per axis), intensity gain (0.85–1.15) and offset (±10), and Gaussian noise
(0–4 grey levels), so the methods also meet varied grids and contrasts.

Labels, from the shipped masks and atlas (all inside the brain mask ``ch2bet > 0``):
1 brain (the rest of the mask: cerebrum and brainstem), 2 cerebellum (AAL 91–116: the
cerebellar hemispheres and the vermis), 3 deep grey nuclei (AAL 71–78: caudate, putamen,
pallidum, thalamus).

The other real labelled cases of ``../shared/DATA.md`` (pyradiomics' MR brain lesion and CT
lung nodule) hold one object each: no held-out split of them exists, so they are not used.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.common import ROOT

COLIN = ROOT / "sample_data" / "colin27"
COLIN_LABELS = {0: "background", 1: "brain", 2: "cerebellum", 3: "deep_grey"}
#: AAL label ranges of the cerebellum (hemispheres and vermis) and the deep grey nuclei.
AAL_CEREBELLUM = (91, 116)
AAL_DEEP_GREY = (71, 78)
#: World x of the mid-sagittal plane (mm); Colin27 is in MNI space.
MIDLINE_X = 0.0
SIDES = ("left", "right")


@lru_cache(maxsize=1)
def colin27_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image float32 (X, Y, Z), labels uint8 (X, Y, Z), 4×4 voxel→RAS affine)`` of Colin27."""
    import nibabel as nib

    head = nib.load(COLIN / "ch2.nii.gz")
    brain = np.asarray(nib.load(COLIN / "ch2bet.nii.gz").dataobj) > 0
    aal = np.asarray(nib.load(COLIN / "aal.nii.gz").dataobj)
    for other in (brain, aal):
        if other.shape != head.shape:
            raise RuntimeError(f"{COLIN}: ch2bet/aal shape {other.shape} differs from ch2's {head.shape}")
    labels = np.zeros(head.shape, np.uint8)
    labels[brain] = 1
    labels[brain & (aal >= AAL_CEREBELLUM[0]) & (aal <= AAL_CEREBELLUM[1])] = 2
    labels[brain & (aal >= AAL_DEEP_GREY[0]) & (aal <= AAL_DEEP_GREY[1])] = 3
    return np.asarray(head.dataobj, dtype=np.float32), labels, head.affine


def hemisphere(side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, labels, affine)`` of the voxels strictly left (x < 0) or right (x > 0) of the midline."""
    image, labels, affine = colin27_arrays()
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))) or affine[0, 0] <= 0:
        raise RuntimeError(f"{COLIN}: expected an axis-aligned RAS grid, got affine\n{affine}")
    x = affine[0, 0] * np.arange(image.shape[0]) + affine[0, 3]
    keep = np.flatnonzero(x < MIDLINE_X - 1e-6) if side == "left" else np.flatnonzero(x > MIDLINE_X + 1e-6)
    sub = affine.copy()
    sub[:3, 3] = affine[:3, :3] @ np.array([keep[0], 0, 0]) + affine[:3, 3]
    return image[keep[0] : keep[-1] + 1], labels[keep[0] : keep[-1] + 1], sub


def _to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """An ``(X, Y, Z)`` array on a RAS affine as a SimpleITK image (LPS geometry)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    lps = np.diag([-1.0, -1.0, 1.0])
    matrix = lps @ affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    img.SetSpacing(spacing.tolist())
    img.SetDirection((matrix / spacing).ravel().tolist())
    img.SetOrigin((lps @ affine[:3, 3]).tolist())
    return img


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    r = np.eye(3)
    for axis in range(3):
        a = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        rot = np.eye(3)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        r = r @ rot
    return r


def write_case(
    seed: int,
    side: str,
    image_path: Path,
    label_path: Path,
    spacing_range: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
) -> None:
    """Write one re-gridded hemisphere (image float32, labels uint8) as NIfTI, seeded by ``seed``.

    ``spacing_range``: lowest and highest spacing per axis (mm); default 1.2–2.2 mm on every axis.
    """
    rng = np.random.default_rng(seed)
    image, labels, affine = hemisphere(side)
    direction = _rotation(rng, 10.0)
    spacing = rng.uniform(1.2, 2.2, 3) if spacing_range is None else rng.uniform(*spacing_range)
    # the output grid covers the hemisphere's box in the rotated frame (LPS world, as SimpleITK)
    src = _to_sitk(image, affine)
    corners = np.array(
        [
            src.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
            for i in (0, image.shape[0] - 1)
            for j in (0, image.shape[1] - 1)
            for k in (0, image.shape[2] - 1)
        ]
    )
    local = corners @ direction  # coordinates along the new axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    size = [int(v) for v in np.ceil((hi - lo) / spacing) + 1]
    origin = direction @ lo
    common = dict(
        size=size,
        transform=sitk.Transform(),
        outputOrigin=origin.tolist(),
        outputSpacing=spacing.tolist(),
        outputDirection=direction.ravel().tolist(),
        defaultPixelValue=0,
    )
    out_img = sitk.Resample(src, interpolator=sitk.sitkLinear, outputPixelType=sitk.sitkFloat32, **common)
    out_lab = sitk.Resample(
        _to_sitk(labels, affine), interpolator=sitk.sitkNearestNeighbor, outputPixelType=sitk.sitkUInt8, **common
    )
    values = sitk.GetArrayFromImage(out_img)
    inside = values > 0
    values = values * rng.uniform(0.85, 1.15) + rng.uniform(-10, 10)
    values = values + rng.normal(0.0, rng.uniform(0.0, 4.0), values.shape)
    values[~inside] = 0.0  # the air stays air, as in the source
    noisy = sitk.GetImageFromArray(values.astype(np.float32))
    noisy.CopyInformation(out_img)
    for img, path in ((noisy, image_path), (out_lab, label_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        sitk.WriteImage(img, str(tmp), useCompression=True)
        tmp.replace(path)
