"""DICOM SEG: references to the source series, dciodvfy, dcmqi round trip, our reader."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.core import Volume
from medseg.errors import GeometryError, InputError, OutputError
from medseg.export import EXPORTERS, read_dicom_seg
from medseg.io import read
from tests.conftest import SAMPLE

from .conftest import ANONYMISED_AWAY, PHANTOM_LABELS

DCIODVFY = shutil.which("dciodvfy")
SEGIMAGE2ITK = shutil.which("segimage2itkimage") or (
    str(Path(sys.executable).parent / "segimage2itkimage")
    if (Path(sys.executable).parent / "segimage2itkimage").exists()
    else None
)
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (apt-get install dicom3tools)")
needs_dcmqi = pytest.mark.skipif(SEGIMAGE2ITK is None, reason="dcmqi not installed (pip install dcmqi)")


@pytest.fixture
def ct_case(tmp_path):
    """A synthetic CT series on disk, read back, and the phantom label map on its grid."""
    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series

    image, label = ct_phantom((32, 28, 12), (1.2, 1.1, 3.0))
    write_series(image, tmp_path / "ct", rescale_intercept=-1024)
    ref = read(tmp_path / "ct")
    return ref, Volume(label.numpy(), ref.affine, kind="label")


@pytest.fixture(scope="module")
def mr_case():
    """The real oblique MR series and a two-label mask on it (read once: 20 real files)."""
    ref = read(SAMPLE / "mr_dicom")
    a = ref.numpy()[0].astype(np.float32)
    mask = (a > np.percentile(a, 85)).astype(np.uint8)
    half = mask[: a.shape[0] // 2]
    half[half > 0] = 3  # non-consecutive values: 1 and 3
    return ref, Volume(mask[None], ref.affine, kind="label")


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def source_uids(ref: Volume) -> set[str]:
    uids = {ref.meta["study_uid"], ref.meta["series_uid"], ref.meta["frame_of_reference_uid"]}
    return uids | set(ref.meta["sop_instance_uids"])


def test_seg_references_the_source_series(ct_case, tmp_path):
    ref, mask = ct_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path / "out", "ct1", image=ref, labels=PHANTOM_LABELS)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.StudyInstanceUID == ref.meta["study_uid"]
    assert ds.FrameOfReferenceUID == ref.meta["frame_of_reference_uid"]
    assert ds.SeriesInstanceUID != ref.meta["series_uid"]
    (series_ref,) = ds.ReferencedSeriesSequence
    assert series_ref.SeriesInstanceUID == ref.meta["series_uid"]
    assert {i.ReferencedSOPInstanceUID for i in series_ref.ReferencedInstanceSequence} == set(
        ref.meta["sop_instance_uids"]
    )
    assert [s.SegmentLabel for s in ds.SegmentSequence] == list(PHANTOM_LABELS.values())
    liver, lesion = ds.SegmentSequence[0], ds.SegmentSequence[3]
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SCT Liver
    assert lesion.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Morphologically Abnormal Structure"
    assert ds.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Kidney"
    # every frame points at the source slice at its position
    sop_by_k = ref.meta["sop_instance_uids"]
    lps_origin = [
        np.array(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, float)
        for f in ref.meta["source_files"]
    ]
    for frame in ds.PerFrameFunctionalGroupsSequence:
        src = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        pos = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        k = sop_by_k.index(src)
        np.testing.assert_allclose(pos, lps_origin[k], atol=1e-3)


def test_read_back_gives_the_same_voxels(ct_case, tmp_path):
    ref, mask = ct_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "ct1", image=ref, labels=PHANTOM_LABELS)
    back = read_dicom_seg(path, ref)
    assert back.grid.matches(ref.grid)
    np.testing.assert_array_equal(back.numpy(), mask.numpy())
    assert back.meta["labels"] == PHANTOM_LABELS


def test_anonymised_source_without_type2_attributes_exports_them_empty(anonymised_case, tmp_path):
    ref, mask = anonymised_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "anon", image=ref, labels=PHANTOM_LABELS)
    ds = pydicom.dcmread(path)
    for name in ANONYMISED_AWAY:
        if name != "PositionReferenceIndicator":  # not part of the SEG IOD's copied modules
            assert name in ds and ds[name].value in (None, ""), name
    np.testing.assert_array_equal(read_dicom_seg(path, ref).numpy(), mask.numpy())


@needs_dciodvfy
def test_anonymised_source_seg_passes_dciodvfy(anonymised_case, tmp_path):
    ref, mask = anonymised_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "anon", image=ref, labels=PHANTOM_LABELS)
    assert dciodvfy_errors(path) == []


@needs_dciodvfy
def test_synthetic_ct_seg_passes_dciodvfy(ct_case, tmp_path):
    ref, mask = ct_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "ct1", image=ref, labels=PHANTOM_LABELS)
    assert dciodvfy_errors(path) == []


@needs_dciodvfy
def test_real_mr_seg_passes_dciodvfy_and_reads_back(mr_case, tmp_path):
    ref, mask = mr_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "mr1", image=ref, labels={1: "brain", 3: "lesion"})
    # The sample series uses UIDs with an illegal root ("0.0.0.0..."); a SEG must reference them verbatim,
    # so only those references may be flagged; everything the SEG itself defines must be clean.
    legal_root = re.compile(r'Illegal root for UID - "([0-9.]+)"')
    own = []
    for line in dciodvfy_errors(path):
        m = legal_root.search(line)
        if not (m and m.group(1) in source_uids(ref)):
            own.append(line)
    assert own == []
    back = read_dicom_seg(path, ref)
    np.testing.assert_array_equal(back.numpy(), mask.numpy())
    assert back.meta["labels"] == {1: "brain", 3: "lesion"}


def _dcmqi_labels(seg: Path, ref: Volume, out: Path) -> np.ndarray:
    """Run dcmqi's segimage2itkimage; paste each segment (cropped by dcmqi) onto the reference grid."""
    out.mkdir()
    run = subprocess.run(
        [SEGIMAGE2ITK, "--inputDICOM", str(seg), "--outputDirectory", str(out), "--outputType", "nifti"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    value_of = {int(s.SegmentNumber): int(s.TrackingID.rsplit(" ", 1)[1]) for s in ds.SegmentSequence}
    labels = np.zeros(ref.spatial_shape, np.uint8)
    inv = np.linalg.inv(ref.affine)
    for number, value in value_of.items():
        seg_vol = read(out / f"{number}.nii.gz")
        np.testing.assert_allclose(seg_vol.affine[:3, :3], ref.affine[:3, :3], atol=1e-4)
        offset = inv[:3, :3] @ seg_vol.affine[:3, 3] + inv[:3, 3]
        o = np.round(offset).astype(int)
        np.testing.assert_allclose(offset, o, atol=0.3)
        x, y, z = seg_vol.spatial_shape
        part = labels[o[0] : o[0] + x, o[1] : o[1] + y, o[2] : o[2] + z]
        part[seg_vol.numpy()[0] > 0] = value
    return labels


@needs_dcmqi
def test_dcmqi_round_trip_synthetic_ct(ct_case, tmp_path):
    ref, mask = ct_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "ct1", image=ref, labels=PHANTOM_LABELS)
    np.testing.assert_array_equal(_dcmqi_labels(path, ref, tmp_path / "dcmqi"), mask.numpy()[0])


@needs_dcmqi
def test_dcmqi_round_trip_real_oblique_mr(mr_case, tmp_path):
    ref, mask = mr_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "mr1", image=ref)
    np.testing.assert_array_equal(_dcmqi_labels(path, ref, tmp_path / "dcmqi"), mask.numpy()[0])


def test_fractional_seg(mr_case, tmp_path):
    ref, mask = mr_case
    m = mask.numpy()[0]
    rng = np.random.default_rng(0)
    p1 = np.where(m == 1, rng.uniform(0.5, 1.0, m.shape), 0.0)
    p3 = np.where(m == 3, rng.uniform(0.5, 1.0, m.shape), 0.0)
    probs = np.stack([1 - p1 - p3, p1, np.zeros_like(p1), p3]).astype(np.float32)
    vol = Volume(probs, ref.affine, kind="probability")
    (path,) = EXPORTERS.build("dicom_seg", segmentation_type="fractional")(vol, tmp_path, "f", image=ref)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SegmentationType == "FRACTIONAL"
    assert len(ds.SegmentSequence) == 2  # channel 2 is empty
    frac = read_dicom_seg(path, ref, fractional=True)
    np.testing.assert_allclose(frac.numpy(), probs[[1, 3]], atol=0.5 / 255 + 1e-6)
    if DCIODVFY:
        legal_root = re.compile(r'Illegal root for UID - "([0-9.]+)"')
        errors = [
            e
            for e in dciodvfy_errors(path)
            if not (legal_root.search(e) and legal_root.search(e).group(1) in source_uids(ref))
        ]
        assert errors == []


def test_fractional_needs_probabilities(ct_case, tmp_path):
    ref, mask = ct_case
    with pytest.raises(InputError, match="probability mask"):
        EXPORTERS.build("dicom_seg", segmentation_type="fractional")(mask, tmp_path, "f", image=ref)


def test_nifti_input_without_source_series_is_a_clear_error(phantom, tmp_path):
    image, label = phantom
    with pytest.raises(OutputError, match="needs the source DICOM series"):
        EXPORTERS.build("dicom_seg")(label, tmp_path, "c", image=image)
    with pytest.raises(OutputError, match="needs the source DICOM series"):
        EXPORTERS.build("dicom_seg")(label, tmp_path, "c")
    assert list(tmp_path.iterdir()) == []


def test_nifti_input_with_source_series(ct_case, tmp_path):
    ref, mask = ct_case
    folder = Path(ref.meta["source_files"][0]).parent
    nifti_image = ref.replace(meta={"source": "ct.nii.gz"})
    exporter = EXPORTERS.build("dicom_seg", source_series=str(folder))
    (path,) = exporter(mask, tmp_path, "c", image=nifti_image, labels=PHANTOM_LABELS)
    np.testing.assert_array_equal(read_dicom_seg(path, nifti_image).numpy(), mask.numpy())
    shifted = mask.replace(
        affine=mask.affine @ np.diag([1.0, 1.0, 1.0, 1.0]) + np.array([[0, 0, 0, 5.0]] + [[0] * 4] * 3)
    )
    with pytest.raises(GeometryError, match="not on the grid.*origin .* mm"):
        exporter(shifted, tmp_path, "c2")


def test_empty_mask_gives_an_empty_seg(ct_case, tmp_path):
    ref, mask = ct_case
    empty = mask.replace(array=np.zeros_like(mask.numpy()))
    with pytest.warns(Warning, match="empty"):
        (path,) = EXPORTERS.build("dicom_seg")(empty, tmp_path, "e", image=ref, labels={1: "liver"})
    back = read_dicom_seg(path, ref)
    assert not back.numpy().any()
    if DCIODVFY:
        assert dciodvfy_errors(path) == []


def test_reader_rejects_other_grids_and_files(ct_case, mr_case, tmp_path):
    ref, mask = ct_case
    (path,) = EXPORTERS.build("dicom_seg")(mask, tmp_path, "ct1", image=ref)
    with pytest.raises(GeometryError, match="do not match the reference"):
        read_dicom_seg(path, mr_case[0])
    with pytest.raises(InputError, match="not a DICOM Segmentation"):
        read_dicom_seg(ref.meta["source_files"][0], ref)
