from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.core import Grid, HistoryEntry, Volume, make_affine
from medseg.core.geometry import LPS_TO_RAS, is_sheared, orientation
from medseg.errors import GeometryError, InputError
from tests.conftest import AFFINES


def test_derived_geometry_matches_nibabel():
    a = AFFINES["oblique"]
    v = Volume(np.zeros((1, 4, 5, 6), np.float32), a)
    zooms = nib.affines.voxel_sizes(a)
    assert np.allclose(v.spacing, zooms)
    assert v.orientation == "".join(nib.aff2axcodes(a))
    assert np.allclose(v.direction @ np.diag(v.spacing), a[:3, :3])
    assert v.origin == tuple(a[:3, 3])
    assert v.spatial_shape == (4, 5, 6)
    assert v.n_channels == 1
    assert v.voxel_volume_mm3 == pytest.approx(np.prod(zooms))


def test_lps_orientation_codes():
    assert orientation(LPS_TO_RAS @ np.eye(4)) == "LPS"
    assert Volume(np.zeros((1, 2, 2, 2)), AFFINES["lps"]).orientation == "LPS"


def test_volume_is_immutable_and_replace_keeps_history():
    v = Volume(np.zeros((1, 2, 2, 2)), np.eye(4))
    with pytest.raises(AttributeError):
        v.kind = "label"  # type: ignore[misc]
    with pytest.raises(ValueError):
        v.affine[0, 0] = 3.0
    w = v.with_step(np.ones((1, 2, 2, 2)), None, HistoryEntry("clip", {"a": 1}))
    assert [h.step for h in w.history] == ["clip"]
    assert v.history == ()


def test_torch_array_and_conversions():
    t = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    v = Volume(t, np.eye(4))
    assert v.device == "cpu"
    assert np.array_equal(v.numpy(), t.numpy())
    assert v.tensor() is t
    assert isinstance(Volume(t.numpy(), np.eye(4)).to("cpu").array, torch.Tensor)


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.zeros((2, 3, 4)), "channel-first"), (np.zeros((1, 0, 3, 4)), "zero-sized"), ([1, 2], "numpy array")],
)
def test_bad_arrays_rejected(array, message):
    with pytest.raises(InputError, match=message):
        Volume(array, np.eye(4))


def test_bad_affine_rejected():
    with pytest.raises(GeometryError, match="4×4"):
        Volume(np.zeros((1, 2, 2, 2)), np.eye(3))
    bad = np.eye(4)
    bad[0, 0] = np.nan
    with pytest.raises(GeometryError, match="NaN"):
        Volume(np.zeros((1, 2, 2, 2)), bad)
    with pytest.raises(GeometryError, match="singular"):
        Volume(np.zeros((1, 2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_bad_kind_rejected():
    with pytest.raises(InputError, match="kind"):
        Volume(np.zeros((1, 2, 2, 2)), np.eye(4), kind="mask")  # type: ignore[arg-type]


def test_grid_matching_and_require_grid():
    a = Volume(np.zeros((1, 4, 4, 4)), make_affine((1, 1, 2)))
    b = Volume(np.zeros((1, 4, 4, 4)), make_affine((1, 1, 2)), kind="label", meta={"source": "mask.nii.gz"})
    c = Volume(np.zeros((1, 4, 4, 5)), make_affine((1, 1, 2)), kind="label", meta={"source": "other.nii.gz"})
    assert a.grid == b.grid and a.grid.matches(b.grid)
    assert a.grid != c.grid
    assert isinstance(hash(a.grid), int) and Grid((4, 4, 4), a.affine) == a.grid
    a.require_grid(b)
    with pytest.raises(GeometryError, match="other.nii.gz"):
        a.require_grid(c, "label")


def test_shear_detection():
    sheared = make_affine((1, 1, 1))
    sheared[1, 2] = 0.3
    assert is_sheared(sheared)
    assert not is_sheared(AFFINES["oblique"])
