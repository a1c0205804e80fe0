from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.transforms import Reorient, invert


@pytest.mark.parametrize("affine", ["oblique", "lps", "ras", "anisotropic"])
@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIL", "SAR"])
def test_reorient_round_trip_exact(make_volume, affine, codes):
    vol = make_volume(shape=(2, 20, 18, 12), affine=affine)
    out = Reorient(codes)(vol)
    assert out.orientation == codes
    back = invert(out, out.history)
    np.testing.assert_array_equal(back.numpy(), vol.numpy())
    np.testing.assert_array_equal(back.affine, vol.affine)


@pytest.mark.parametrize("affine", ["oblique", "lps"])
def test_reorient_keeps_world_positions(make_volume, affine):
    vol = make_volume(shape=(1, 7, 6, 5), affine=affine)
    out = Reorient("RAS")(vol)
    world = {}
    for idx in np.ndindex(vol.spatial_shape):
        world[tuple(np.round(vol.affine @ (*idx, 1), 6))] = vol.numpy()[(0, *idx)]
    for idx in np.ndindex(out.spatial_shape):
        key = tuple(np.round(out.affine @ (*idx, 1), 6))
        assert world[key] == out.numpy()[(0, *idx)]


def test_reorient_matches_nibabel(make_volume):
    vol = make_volume(shape=(1, 20, 18, 12), affine="lps")
    img = nib.Nifti1Image(vol.numpy()[0], vol.affine)
    ref = nib.as_closest_canonical(img)
    out = Reorient("RAS")(vol)
    np.testing.assert_array_equal(out.numpy()[0], np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(out.affine, ref.affine)


def test_reorient_labels_keep_dtype(make_volume):
    lab = make_volume(affine="lps", kind="label")
    out = Reorient()(lab)
    assert out.numpy().dtype == np.uint8 and out.kind == "label"


@pytest.mark.parametrize("bad", ["RAX", "RRS", "RA", "LPSI"])
def test_reorient_bad_codes(bad):
    with pytest.raises(ConfigError, match="axcodes"):
        Reorient(bad)
