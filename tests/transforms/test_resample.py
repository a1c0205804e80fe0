from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from medseg.core import Grid, Volume, make_affine
from medseg.errors import ConfigError, GeometryError
from medseg.io.itk import sitk_geometry, volume_to_sitk
from medseg.transforms import Resample, ResampleTo, build, invert
from medseg.transforms.functional import bspline
from tests.conftest import AFFINES, oblique_affine


def sitk_resample(volume: Volume, shape, affine, interp=sitk.sitkLinear) -> np.ndarray:
    """SimpleITK's resampling of ``volume`` onto the grid (shape, affine), as (X, Y, Z)."""
    ref = sitk.Image([int(s) for s in shape], sitk.sitkFloat32)
    sp, org, d = sitk_geometry(affine)
    ref.SetSpacing(sp)
    ref.SetOrigin(org)
    ref.SetDirection(d)
    src = volume_to_sitk(volume.replace(array=volume.numpy().astype(np.float64)))
    out = sitk.Resample(src, ref, sitk.Transform(), interp, 0.0, sitk.sitkFloat64)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


@pytest.mark.parametrize("affine", ["oblique", "lps", "ras", "anisotropic"])
@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (0.6, 0.45, 1.0)])
def test_resample_linear_matches_simpleitk(make_volume, affine, spacing):
    vol = make_volume(shape=(1, 21, 18, 11), affine=affine)
    out = Resample(spacing=spacing)(vol)
    np.testing.assert_allclose(out.spacing, spacing, rtol=1e-12)
    np.testing.assert_allclose(out.direction, vol.direction, atol=1e-12)
    expected = sitk_resample(vol, out.spatial_shape, out.affine)
    # a sample exactly on the image border (half a voxel past the last centre, when the new
    # shape was rounded up) is "outside" for ITK by float error; we extend the edge there
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in out.spatial_shape], indexing="ij"), -1)
    src = idx @ (np.linalg.inv(vol.affine) @ out.affine)[:3, :3].T + (np.linalg.inv(vol.affine) @ out.affine)[:3, 3]
    inner = np.all((src > -0.5 + 1e-9) & (src < np.array(vol.spatial_shape) - 0.5 - 1e-9), axis=-1)
    assert inner.mean() > 0.9
    np.testing.assert_allclose(out.numpy()[0][inner], expected[inner], atol=1e-3)


def test_resample_keeps_physical_extent(make_volume):
    vol = make_volume(shape=(1, 20, 18, 12), affine="anisotropic")  # 0.5, 0.7, 5.0 mm
    out = Resample(spacing=(1.5, 1.5, 1.5))(vol)
    assert out.spatial_shape == (7, 8, 40)
    # the outer corner of voxel 0 stays put
    corner_in = vol.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    corner_out = out.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    np.testing.assert_allclose(corner_out, corner_in, atol=1e-9)


def test_resample_labels_nearest_matches_simpleitk(make_volume):
    lab = make_volume(shape=(1, 21, 18, 11), affine="oblique", kind="label", n_labels=5)
    out = Resample(spacing=(0.7, 1.6, 1.1))(lab)
    assert out.kind == "label" and out.numpy().dtype == np.uint8
    expected = sitk_resample(lab, out.spatial_shape, out.affine, sitk.sitkNearestNeighbor)
    # ties at exactly half a voxel may round differently; everywhere else identical
    assert (out.numpy()[0] == expected).mean() > 0.995


def test_resample_labels_linear_one_hot():
    lab = np.zeros((1, 12, 12, 4), dtype=np.uint8)
    lab[0, 3:9, 3:9, :] = 2
    vol = Volume(lab, make_affine((1.0, 1.0, 4.0)), kind="label")
    out = Resample(spacing=(1.0, 1.0, 1.0), label_mode="linear")(vol)
    assert out.spatial_shape == (12, 12, 16)
    assert set(np.unique(out.numpy())) == {0, 2}
    np.testing.assert_array_equal(out.numpy()[0, :, :, 5], lab[0, :, :, 1])


def test_resample_shape_option(make_volume):
    vol = make_volume(shape=(1, 20, 18, 12), affine="lps")
    out = Resample(shape=(10, 9, 24))(vol)
    assert out.spatial_shape == (10, 9, 24)
    np.testing.assert_allclose(out.spacing, np.array(vol.spacing) * [2.0, 2.0, 0.5])


def test_resample_cubic_matches_scipy(make_volume):
    vol = make_volume(shape=(1, 15, 13, 9), affine="oblique")
    out = Resample(spacing=(0.7, 1.9, 1.6), mode="cubic")(vol)
    # the same voxel positions, sampled by scipy's cubic B-spline with mirror boundaries
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in out.spatial_shape], indexing="ij"), -1).reshape(-1, 3)
    src = (np.linalg.inv(vol.affine) @ out.affine @ np.c_[idx, np.ones(len(idx))].T)[:3]
    expected = ndimage.map_coordinates(vol.numpy()[0].astype(np.float64), src, order=3, mode="mirror")
    np.testing.assert_allclose(out.numpy()[0].ravel(), expected, atol=2e-3)


def test_bspline_interpolates_samples_exactly():
    x = torch.randn(3, 17, dtype=torch.float64)
    c = bspline.prefilter(x, 1)
    back = bspline.interpolate_axis(c, 1, torch.arange(17, dtype=torch.float64))
    torch.testing.assert_close(back, x)


def test_anisotropic_rule_uses_nearest_across_slices():
    arr = np.zeros((1, 8, 8, 4), dtype=np.float32)
    arr[0, :, :, 1] = 100.0
    vol = Volume(arr, make_affine((1.0, 1.0, 4.0)))
    smooth = Resample(spacing=(1.0, 1.0, 1.0))(vol)
    split = Resample(spacing=(1.0, 1.0, 1.0), anisotropic=True)(vol)
    assert set(np.unique(split.numpy())) == {0.0, 100.0}  # no blending across slices
    assert len(np.unique(smooth.numpy())) > 2
    iso = Volume(arr, make_affine((1.0, 1.0, 2.0)))  # ratio 2 < 3: rule does not apply
    assert len(np.unique(Resample(spacing=1.0, anisotropic=True)(iso).numpy())) > 2


def test_two_dimensional_volume_keeps_single_slice():
    vol = Volume(np.random.default_rng(0).random((1, 16, 12, 1), dtype=np.float32), make_affine((0.5, 0.5, 3.0)))
    out = Resample(spacing=1.0)(vol)
    assert out.spatial_shape == (8, 6, 1)
    np.testing.assert_allclose(out.spacing, (1.0, 1.0, 3.0))


@pytest.mark.parametrize("affine", ["oblique", "lps"])
def test_resample_round_trip_grid(make_volume, affine):
    vol = make_volume(shape=(1, 20, 18, 12), affine=affine)
    out = Resample(spacing=(1.3, 0.8, 2.1))(vol)
    back = invert(out, out.history)
    assert back.spatial_shape == vol.spatial_shape
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    assert back.history == ()


def test_inverse_of_smooth_image_is_close():
    x, y, z = np.meshgrid(*[np.linspace(0, 1, n) for n in (30, 28, 14)], indexing="ij")
    arr = (100 * np.sin(3 * x) * np.cos(2 * y) + 50 * z).astype(np.float32)[None]
    vol = Volume(arr, oblique_affine())
    out = Resample(spacing=(0.6, 0.7, 1.5))(vol)
    back = invert(out.replace(kind="probability"), out.history)
    np.testing.assert_allclose(back.numpy()[:, 1:-1, 1:-1, 1:-1], arr[:, 1:-1, 1:-1, 1:-1], atol=2.0)


@pytest.mark.parametrize("bad", [{"spacing": (1.0, 0.0, 1.0)}, {"spacing": -1.0}, {"spacing": (1, 2)}, {}])
def test_bad_spacing(bad):
    with pytest.raises(ConfigError, match="resample"):
        Resample(**bad)


def test_both_spacing_and_shape():
    with pytest.raises(ConfigError, match="exactly one"):
        Resample(spacing=1.0, shape=(4, 4, 4))


def test_build_and_did_you_mean():
    assert build("resample", spacing=[1.5, 1.5, 1.5]) == Resample(spacing=(1.5, 1.5, 1.5))
    with pytest.raises(ConfigError, match="did you mean 'spacing'"):
        build("resample", spacin=1.5)
    with pytest.raises(ConfigError, match="did you mean 'resample'"):
        build("resampel", spacing=1.5)
    with pytest.raises(ConfigError, match="mode"):
        build("resample", spacing=1.5, mode="bicubic")


@pytest.mark.parametrize("target", ["lps", "oblique"])
def test_resample_to_matches_simpleitk(make_volume, target):
    vol = make_volume(shape=(1, 20, 18, 12), affine="oblique")
    direction = AFFINES[target][:3, :3] / np.linalg.norm(AFFINES[target][:3, :3], axis=0)
    ref = Grid((16, 17, 14), make_affine((1.2, 1.1, 1.4), (-35.0, 14.0, 8.0), direction))
    out = ResampleTo(ref)(vol)
    assert out.grid.matches(ref)
    expected = sitk_resample(vol, ref.shape, ref.affine)
    np.testing.assert_allclose(out.numpy()[0], expected, atol=2e-3)


def test_resample_to_label_onto_image(make_volume):
    image = make_volume(shape=(1, 20, 18, 12), affine="oblique")
    # half-resolution label grid, shifted a quarter voxel so no image voxel sits on a rounding tie
    lab_affine = image.affine @ np.array([[2.0, 0, 0, 0.3], [0, 2.0, 0, 0.2], [0, 0, 2.0, 0.1], [0, 0, 0, 1]])
    lab = make_volume(shape=(1, 10, 9, 6), affine=lab_affine, kind="label")
    out = ResampleTo(image)(lab)
    assert out.grid.matches(image.grid) and out.numpy().dtype == np.uint8
    expected = sitk_resample(lab, image.spatial_shape, image.affine, sitk.sitkNearestNeighbor)
    assert (out.numpy()[0] == expected).mean() > 0.99
    back = invert(out, out.history)
    assert back.grid.matches(lab.grid, atol=0)


def test_resample_to_inverse_fills_background_probability(make_volume):
    vol = make_volume(shape=(1, 20, 18, 12), affine="ras")
    ref = Grid((10, 9, 6), make_affine((1.0, 1.0, 1.0), (5.0, 4.0, 3.0)))
    out = ResampleTo(ref)(vol)
    prob = torch.zeros((2, 10, 9, 6))
    prob[1] = 1.0
    back = invert(out.replace(array=prob, kind="probability"), out.history)
    assert back.grid.matches(vol.grid, atol=0)
    b = back.numpy()
    assert b[0, 0, 0, 0] == 1.0 and b[1, 0, 0, 0] == 0.0  # outside the reference: background
    assert b[1, 7, 6, 5] == 1.0


def test_resample_to_rejects_cubic_on_oblique(make_volume):
    vol = make_volume(affine="oblique")
    with pytest.raises(ConfigError, match="axis-aligned"):
        ResampleTo(Grid((5, 5, 5), np.eye(4)), mode="cubic")(vol)


def test_invert_rejects_mismatched_prediction(make_volume):
    vol = make_volume(affine="lps")
    out = Resample(spacing=2.0)(vol)
    wrong = out.replace(array=np.zeros((1, 3, 3, 3), dtype=np.float32))
    with pytest.raises(GeometryError, match="shape"):
        invert(wrong, out.history)


def test_fortran_ordered_input_gives_same_result(make_volume):
    vol = make_volume(shape=(1, 20, 18, 12), affine="lps")
    fortran = vol.replace(array=np.asfortranarray(vol.numpy()[0])[None])
    assert not fortran.numpy().flags.c_contiguous
    step = Resample(spacing=(1.3, 0.7, 1.9))
    np.testing.assert_allclose(step(fortran).numpy(), step(vol).numpy(), atol=1e-4)


def test_whole_chain_round_trip_lands_on_original_grid(make_volume):
    from medseg.transforms import CropForeground, Pad, Reorient, ScaleIntensity

    vol = make_volume(shape=(1, 20, 18, 12), affine="lps")
    out = vol
    for step in (
        Reorient(),
        Resample(spacing=1.1),
        ScaleIntensity(low=0, high=200),
        CropForeground(threshold=0.6),
        Pad(multiple_of=8),
    ):
        out = step(out)
    assert [h.step for h in out.history] == ["reorient", "resample", "scale_intensity", "crop_foreground", "pad"]
    logits = torch.randn((3, *out.spatial_shape))
    back = invert(out.replace(array=logits, kind="probability"), out.history)
    assert back.spatial_shape == vol.spatial_shape and back.n_channels == 3
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    labels = invert(out.replace(array=logits.argmax(0, keepdim=True).to(torch.uint8), kind="label"), out.history)
    assert labels.grid.matches(vol.grid, atol=1e-12)


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (0.7, 1.3, 2.2)])
def test_first_voxel_grid_matches_monai_spacing(make_volume, spacing):
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    vol = make_volume(shape=(2, 21, 18, 11), affine="anisotropic")
    out = Resample(spacing=spacing, grid="first_voxel")(vol)
    ref = Spacing(pixdim=spacing, mode="bilinear")(
        MetaTensor(torch.from_numpy(vol.numpy().astype(np.float32)), affine=torch.tensor(vol.affine))
    )
    assert out.spatial_shape == tuple(ref.shape[1:])
    np.testing.assert_allclose(out.affine, ref.affine.numpy(), atol=1e-6)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-4 * float(np.abs(vol.numpy()).max()))
    back = invert(out, out.history)
    assert back.grid.matches(vol.grid, atol=1e-9)


def test_first_voxel_grid_shape_option(make_volume):
    vol = make_volume(shape=(1, 21, 18, 11), affine="ras")
    out = Resample(shape=(11, 35, 1), grid="first_voxel")(vol)
    assert out.spatial_shape == (11, 35, 1)
    np.testing.assert_allclose(out.affine[:3, 3], vol.affine[:3, 3])  # first voxel centre stays
    np.testing.assert_allclose(
        out.spacing[:2], [v * (n - 1) / (m - 1) for v, n, m in zip(vol.spacing, (21, 18), (11, 35))]
    )
    with pytest.raises(ConfigError, match="grid must be one of"):
        Resample(spacing=1.0, grid="corner")  # type: ignore[arg-type]


def test_an_axis_that_keeps_its_size_is_still_resampled_when_its_spacing_changes():
    """torch's trilinear kernel copies an axis whose size does not change, whatever scale it is given; the
    separable resampler must not take that shortcut (100 voxels of 1 mm → 100 of 1.004 mm moves voxels)."""
    import torch

    from medseg.transforms.functional.resample import resample_separable

    x = torch.arange(100, dtype=torch.float32).reshape(1, 100, 1, 1).expand(1, 100, 2, 2).contiguous()
    scale = 1.004
    out = resample_separable(x, (100, 2, 2), (scale, 1.0, 1.0), ((scale - 1) / 2, 0.0, 0.0), ("linear",) * 3)
    expected = (torch.arange(100, dtype=torch.float64) + 0.5) * scale - 0.5
    assert torch.allclose(out[0, :, 0, 0].double(), expected.clamp(0, 99), atol=1e-4)
