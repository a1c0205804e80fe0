"""write → read keeps array, dtype and affine, in NIfTI, NRRD, MHA, MHD; compared with nibabel/SimpleITK."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import medseg
from medseg.core import Volume, make_affine
from medseg.errors import GeometryError, InputError, OutputError
from tests.conftest import AFFINES

FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"]


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("affine", sorted(AFFINES))
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_roundtrip(tmp_path, make_volume, suffix, affine, dtype):
    v = make_volume((1, 7, 6, 5), affine=affine, dtype=dtype)
    path = medseg.write(v, tmp_path / f"img{suffix}")
    back = medseg.read(path)
    assert back.numpy().dtype == dtype
    assert np.array_equal(back.numpy(), v.numpy())
    # NIfTI stores the affine in float32, ITK stores spacing/origin/direction in float64
    tol = 1e-5 if suffix.startswith(".nii") else 1e-9
    assert np.allclose(back.affine, v.affine, atol=tol, rtol=0)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_multichannel_roundtrip(tmp_path, make_volume, suffix):
    v = make_volume((3, 5, 4, 6), affine="lps")
    back = medseg.read(medseg.write(v, tmp_path / f"img{suffix}"))
    assert back.n_channels == 3
    assert np.array_equal(back.numpy(), v.numpy())


def test_nifti_geometry_equals_nibabel_and_sitk(tmp_path, make_volume):
    v = make_volume((1, 9, 8, 7), affine="oblique")
    path = medseg.write(v, tmp_path / "x.nii.gz")
    img = nib.load(path)
    assert np.allclose(img.affine, v.affine, atol=1e-5)
    assert np.array_equal(np.asanyarray(img.dataobj), v.numpy()[0])
    s = sitk.ReadImage(str(path))
    lps_origin = np.array(s.GetOrigin())
    assert np.allclose(lps_origin * [-1, -1, 1], v.origin, atol=1e-4)
    assert np.allclose(s.GetSpacing(), v.spacing, atol=1e-5)


def test_nrrd_geometry_equals_sitk(tmp_path, make_volume):
    v = make_volume((1, 9, 8, 7), affine="lps")
    path = medseg.write(v, tmp_path / "x.nrrd")
    s = sitk.ReadImage(str(path))
    assert np.allclose(s.GetSpacing(), v.spacing)
    assert np.allclose(np.array(s.GetOrigin()) * [-1, -1, 1], v.origin)
    assert np.array_equal(sitk.GetArrayFromImage(s).transpose(2, 1, 0), v.numpy()[0])


def test_nifti_scaling_applied(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(2.0, -5.0)
    nib.save(img, tmp_path / "s.nii.gz")
    v = medseg.read(tmp_path / "s.nii.gz")
    assert np.allclose(v.numpy()[0], np.arange(24).reshape(2, 3, 4) * 2.0 - 5.0)


def test_nifti_4d_is_channels_and_2d_is_one_slice(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), tmp_path / "4d.nii.gz")
    assert medseg.read(tmp_path / "4d.nii.gz").array.shape == (2, 4, 5, 6)
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.float32), np.eye(4)), tmp_path / "2d.nii.gz")
    assert medseg.read(tmp_path / "2d.nii.gz").array.shape == (1, 4, 5, 1)


def test_nifti2_is_read(tmp_path):
    nib.save(nib.Nifti2Image(np.ones((3, 3, 3), np.float32), AFFINES["lps"]), tmp_path / "n2.nii")
    v = medseg.read(tmp_path / "n2.nii")
    assert np.allclose(v.affine, AFFINES["lps"], atol=1e-5)


def test_label_int64_is_narrowed(tmp_path):
    v = Volume(np.array([[[[0, 1], [2, 300]]]], dtype=np.int64), np.eye(4), kind="label")
    back = medseg.read(medseg.write(v, tmp_path / "l.nii.gz"))
    assert back.numpy().dtype == np.uint16


def test_sheared_affine_refused_for_nrrd(tmp_path):
    a = make_affine((1, 1, 1))
    a[0, 2] = 0.4
    with pytest.raises(GeometryError, match="sheared"):
        medseg.write(Volume(np.zeros((1, 2, 2, 2)), a), tmp_path / "x.nrrd")
    assert not list(tmp_path.iterdir())


def test_png_roundtrip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (1, 12, 7, 1)).astype(np.uint8)
    v = Volume(arr, np.eye(4))
    back = medseg.read(medseg.write(v, tmp_path / "x.png"))
    assert back.array.shape == (1, 12, 7, 1)
    assert np.array_equal(back.numpy(), arr)


def test_rgb_png_has_three_channels(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((5, 9, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert medseg.read(tmp_path / "rgb.png").array.shape == (3, 9, 5, 1)


def test_unknown_output_suffix(tmp_path, make_volume):
    with pytest.raises(OutputError, match=r"\.xyz"):
        medseg.write(make_volume(), tmp_path / "x.xyz")


def test_write_replaces_existing_atomically(tmp_path, make_volume):
    p = tmp_path / "x.nii.gz"
    medseg.write(make_volume(seed=1), p)
    medseg.write(make_volume(seed=2), p)
    assert np.array_equal(medseg.read(p).numpy(), make_volume(seed=2).numpy())
    assert [f.name for f in tmp_path.iterdir()] == ["x.nii.gz"]


def test_input_never_modified(tmp_path, make_volume):
    p = medseg.write(make_volume(), tmp_path / "x.nii.gz")
    before = p.read_bytes()
    medseg.read(p)
    assert p.read_bytes() == before


def test_sample_nrrd_lps_matches_sitk(sample):
    path = sample / "brain_mr" / "brain1_image.nrrd"
    v = medseg.read(path)
    s = sitk.ReadImage(str(path))
    assert v.spatial_shape == s.GetSize()
    idx = (10, 20, 5)
    world_lps = s.TransformIndexToPhysicalPoint(idx)
    ours = v.affine @ [*idx, 1]
    assert np.allclose(ours[:3] * [-1, -1, 1], world_lps, atol=1e-6)
    assert v.numpy()[0][idx] == sitk.GetArrayFromImage(s)[idx[::-1]]


def test_unknown_file_type(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(InputError, match="notes.txt"):
        medseg.read(p)


def test_read_channels_concatenates_and_checks_grids(tmp_path, make_volume):
    from medseg.errors import GeometryError
    from medseg.io import read_channels

    a = medseg.write(make_volume(seed=1), tmp_path / "c_0000.nii.gz")
    b = medseg.write(make_volume(seed=2), tmp_path / "c_0001.nii.gz")
    v = read_channels([a, b])
    assert v.n_channels == 2 and v.meta["sources"] == [str(a), str(b)]
    assert np.array_equal(v.numpy()[1], make_volume(seed=2).numpy()[0])
    c = medseg.write(make_volume((1, 20, 18, 13)), tmp_path / "other.nii.gz")
    with pytest.raises(GeometryError, match="other.nii.gz"):
        read_channels([a, c])


def test_nifti_units_are_mm_and_one_volume_4d_files_stay_4d(tmp_path):
    import nibabel as nib

    from medseg.io import read, write

    data = np.random.default_rng(0).normal(size=(6, 5, 4, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 2.0, 1.0])), tmp_path / "in4d.nii.gz")
    image = read(tmp_path / "in4d.nii.gz")
    assert image.array.shape == (1, 6, 5, 4)
    mask = image.replace(array=(image.numpy() > 0).astype(np.uint8), kind="label")
    write(mask, tmp_path / "mask.nii.gz")
    out = nib.load(tmp_path / "mask.nii.gz")
    assert out.shape == (6, 5, 4, 1)  # the input's dimensionality
    assert out.header.get_xyzt_units() == ("mm", "sec")
    assert np.array_equal(read(tmp_path / "mask.nii.gz").numpy(), mask.numpy())
    write(mask.replace(meta={}), tmp_path / "plain.nii.gz")
    assert nib.load(tmp_path / "plain.nii.gz").shape == (6, 5, 4)


def test_compressed_nifti_through_isal_is_byte_identical_to_nibabel(tmp_path):
    """ISA-L streams .nii.gz: the same array as nibabel's gzip reads, the same NIfTI bytes as nibabel writes."""
    import gzip

    import nibabel as nib

    from medseg.io import nifti, read, write

    assert nifti._isal() is not None  # a runtime dependency: the fast path is what users get
    data = np.random.default_rng(1).integers(-1000, 2000, size=(40, 30, 20)).astype(np.int16)
    affine = AFFINES["oblique"]
    ours = write(Volume(data[None], affine), tmp_path / "ours.nii.gz")
    theirs = tmp_path / "theirs.nii.gz"
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, theirs)
    assert gzip.decompress(ours.read_bytes()) == gzip.decompress(theirs.read_bytes())
    assert np.array_equal(read(theirs).numpy()[0], np.asanyarray(nib.load(theirs).dataobj))
    assert np.array_equal(read(ours).numpy()[0], data)


def test_compressed_nifti_bytes_do_not_depend_on_the_file_name_or_time(tmp_path):
    from medseg.io import write

    vol = Volume(np.arange(60, dtype=np.int16).reshape(1, 5, 4, 3), np.eye(4))
    a = write(vol, tmp_path / "a.nii.gz").read_bytes()
    b = write(vol, tmp_path / "other_name.nii.gz").read_bytes()
    assert a == b
