"""Metrics against MONAI on random anisotropic masks, analytic spheres and empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric, SurfaceDistanceMetric
from scipy import ndimage

from medseg.core import Volume, make_affine
from medseg.errors import GeometryError
from medseg.metrics import (
    assd,
    dice,
    evaluate_case,
    hausdorff95,
    iou,
    precision,
    recall,
    summarize,
    surface_dice,
    volume_difference,
)

SPACING = (0.7, 1.3, 2.5)


def blobs(seed: int, shape=(40, 36, 24)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2.0) > 0.5


def onehot(m: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(m.astype(np.float32))
    return torch.stack([1 - t, t])[None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_monai(seed: int) -> None:
    p, r = blobs(seed), blobs(seed + 10)
    pt, rt = onehot(p), onehot(r)
    m_dice = DiceMetric(include_background=False)(pt, rt).item()
    m_hd = HausdorffDistanceMetric(include_background=False, percentile=95)(pt, rt, spacing=SPACING).item()
    m_assd = SurfaceDistanceMetric(include_background=False, symmetric=True)(pt, rt, spacing=SPACING).item()
    m_nsd = SurfaceDiceMetric([2.0], include_background=False)(pt, rt, spacing=SPACING).item()
    assert dice(p, r) == pytest.approx(m_dice, abs=1e-4)
    assert hausdorff95(p, r, spacing=SPACING) == pytest.approx(m_hd, abs=1e-4)
    assert assd(p, r, spacing=SPACING) == pytest.approx(m_assd, abs=1e-4)
    assert surface_dice(p, r, tolerance_mm=2.0, spacing=SPACING) == pytest.approx(m_nsd, abs=1e-4)


def sphere(radius_mm: float, spacing: float, centre_mm=(0.0, 0.0, 0.0), n: int = 64) -> np.ndarray:
    ax = (np.arange(n) - n / 2 + 0.5) * spacing
    x, y, z = np.meshgrid(ax - centre_mm[0], ax - centre_mm[1], ax - centre_mm[2], indexing="ij")
    return x**2 + y**2 + z**2 <= radius_mm**2


def test_spheres_analytic() -> None:
    sp = 0.5
    a, b = sphere(10.0, sp), sphere(12.0, sp)
    # concentric spheres: every surface distance is about 2 mm (voxelised: within a voxel)
    assert hausdorff95(a, b, spacing=sp) == pytest.approx(2.0, abs=sp)
    assert assd(a, b, spacing=sp) == pytest.approx(2.0, abs=sp)
    assert dice(a, b) == pytest.approx(2 * 10**3 / (10**3 + 12**3), abs=0.01)
    assert iou(a, b) == pytest.approx(10**3 / 12**3, abs=0.01)
    assert precision(a, b) == 1.0
    assert recall(a, b) == pytest.approx(10**3 / 12**3, abs=0.01)
    assert surface_dice(a, b, tolerance_mm=2.5, spacing=sp) == 1.0
    assert surface_dice(a, b, tolerance_mm=1.0, spacing=sp) == 0.0
    abs_ml, rel = volume_difference(a, b, spacing=sp)
    assert abs_ml == pytest.approx(4 / 3 * math.pi * (12**3 - 10**3) / 1000, rel=0.02)
    assert rel == pytest.approx(100 * (10**3 / 12**3 - 1), abs=1.0)
    shifted = sphere(10.0, sp, centre_mm=(3.0, 0.0, 0.0))
    assert hausdorff95(a, shifted, spacing=sp) <= 3.0 + 1e-9
    assert hausdorff95(a, shifted, spacing=sp) > 2.0


def test_empty_conventions() -> None:
    e = np.zeros((8, 8, 8), bool)
    f = e.copy()
    f[2:5, 2:5, 2:5] = True
    # both empty
    assert dice(e, e) == 1.0 and iou(e, e) == 1.0 and precision(e, e) == 1.0 and recall(e, e) == 1.0
    assert hausdorff95(e, e) == 0.0 and assd(e, e) == 0.0 and surface_dice(e, e) == 1.0
    assert volume_difference(e, e) == (0.0, 0.0)
    # one empty
    for p, r in [(e, f), (f, e)]:
        assert dice(p, r) == 0.0 and iou(p, r) == 0.0 and surface_dice(p, r) == 0.0
        assert math.isnan(hausdorff95(p, r)) and math.isnan(assd(p, r))
    assert math.isnan(precision(e, f)) and recall(e, f) == 0.0
    assert precision(f, e) == 0.0 and math.isnan(recall(f, e))
    assert math.isnan(volume_difference(f, e)[1])
    assert volume_difference(e, f, spacing=2.0)[0] == pytest.approx(27 * 8 / 1000)


def test_volumes_give_spacing_and_grids_are_checked() -> None:
    p, r = blobs(3), blobs(4)
    aff = make_affine(SPACING, (1.0, 2.0, 3.0))
    pv = Volume(p[None].astype(np.uint8), aff, kind="label")
    rv = Volume(r[None].astype(np.uint8), aff, kind="label")
    assert hausdorff95(pv, rv) == pytest.approx(hausdorff95(p, r, spacing=SPACING))
    other = Volume(r[None].astype(np.uint8), make_affine((1, 1, 1)), kind="label")
    with pytest.raises(GeometryError, match="grid"):
        dice(pv, other)
    with pytest.raises(GeometryError, match="shape"):
        dice(p, r[:-1])


def test_evaluate_case_per_label_and_summary() -> None:
    rng = np.random.default_rng(0)
    ref = np.zeros((30, 30, 20), np.uint8)
    ref[5:15, 5:15, 5:15] = 1
    ref[18:25, 18:25, 5:10] = 2
    pred = ref.copy()
    pred[5:7] = 0
    pred[rng.random(pred.shape) < 0.001] = 3
    rows = evaluate_case(pred, ref, spacing=SPACING, tolerance_mm=1.5)
    assert [r["label"] for r in rows] == [1, 2, 3]
    assert rows[0]["dice"] == pytest.approx(dice(pred, ref, label=1))
    assert rows[0]["hausdorff95_mm"] == pytest.approx(hausdorff95(pred, ref, label=1, spacing=SPACING))
    assert rows[1]["dice"] == 1.0 and rows[1]["hausdorff95_mm"] == 0.0
    assert rows[2]["dice"] == 0.0 and math.isnan(rows[2]["hausdorff95_mm"])
    assert rows[0]["volume_ref_ml"] == pytest.approx(1000 * np.prod(SPACING) / 1000)
    summary = summarize(rows + evaluate_case(ref, ref, spacing=SPACING))
    assert summary["1"]["dice"]["n"] == 2
    assert summary["1"]["dice"]["mean"] == pytest.approx((rows[0]["dice"] + 1.0) / 2)
    assert summary["3"]["hausdorff95_mm"] == {"mean": None, "median": None, "std": None, "n": 0, "n_nan": 1}
