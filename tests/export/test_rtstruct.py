"""RTSTRUCT export: round trips (holes, islands, border, oblique), dciodvfy, plastimatch both ways, CLI, pipelines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medseg
from medseg.core import Volume
from medseg.errors import InputWarning, OutputError
from medseg.export import EXPORTERS
from medseg.io.contours import polygon_area, to_voxels
from medseg.io.rtstruct import rois
from tests.conftest import oblique_affine

from .conftest import ANONYMISED_AWAY

DCIODVFY = shutil.which("dciodvfy")
PLASTIMATCH = shutil.which("plastimatch")
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (apt-get install dicom3tools)")
needs_plastimatch = pytest.mark.skipif(
    PLASTIMATCH is None, reason="plastimatch not installed (apt-get install plastimatch)"
)
ORGANS = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "lesion"}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _series(dicom_series, name: str, shape, spacing=(0.9, 0.8, 2.5), affine=None):
    folder = dicom_series(name, shape=shape, spacing=spacing, affine=affine)
    return folder, medseg.read(folder)


@pytest.fixture
def organs(dicom_series):
    """A CT phantom series with its organ label map (the lesion sits inside the liver: a hole in it)."""
    from medseg.data import ct_phantom

    folder, ref = _series(dicom_series, "ct", (72, 64, 14))
    _, label = ct_phantom((72, 64, 14), (0.9, 0.8, 2.5))
    return folder, ref, Volume(label.numpy(), ref.affine, kind="label")


def _holes_and_islands(shape) -> np.ndarray:
    """An annulus with an island in its hole, two separate blobs, one- and two-voxel islands, a border strip."""
    x, y = np.indices(shape[:2]).astype(float)
    r = np.hypot(x - shape[0] * 0.45, y - shape[1] * 0.5)
    m2 = (r <= shape[0] * 0.3) & (r > shape[0] * 0.12)  # ring
    m2 |= r <= shape[0] * 0.05  # island inside the hole
    m2 |= np.hypot(x - shape[0] * 0.88, y - shape[1] * 0.2) <= 3  # a separate blob
    m2[2, 2] = True  # a one-voxel island
    m2[shape[0] - 3, shape[1] - 4 : shape[1] - 2] = True  # a two-voxel island
    m2[:, 0] = True  # touching the border
    m = np.zeros(shape, np.uint8)
    m[:, :, 2 : shape[2] - 2] = m2[:, :, None]
    m[:, :, shape[2] // 2] = 0  # a gap between slices
    return m


def _round_trip(ref: Volume, mask: Volume, out: Path, labels: dict[int, str], **options) -> tuple[Path, Volume]:
    (path,) = EXPORTERS.build("rtstruct", **options)(mask, out, "case", image=ref, labels=labels)
    return path, medseg.read(path, reference=ref, labels={v: [n] for v, n in labels.items()})


def _check_round_trip(mask: np.ndarray, back: np.ndarray, values) -> None:
    for v in values:
        a, b = mask == v, back == v
        assert dice(a, b) >= 0.99 and abs(int(b.sum()) - int(a.sum())) <= 0.02 * a.sum()
    np.testing.assert_array_equal(back, mask)  # in fact voxel for voxel


def test_organ_round_trip_is_exact(organs, tmp_path):
    _, ref, mask = organs
    path, back = _round_trip(ref, mask, tmp_path, ORGANS)
    assert back.grid.matches(ref.grid)
    _check_round_trip(mask.numpy()[0], back.numpy()[0], ORGANS)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT" and ds.StudyInstanceUID == ref.meta["study_uid"]
    assert ds.FrameOfReferenceUID == ref.meta["frame_of_reference_uid"]
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ref.meta["series_uid"]
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == ref.meta["sop_instance_uids"]
    assert [r.ROIName for r in ds.StructureSetROISequence] == list(ORGANS.values())
    assert list(ds.ROIContourSequence[0].ROIDisplayColor) == [221, 130, 101]
    # every contour lies on the plane of the slice it references, and its area is the voxel count
    sops = ref.meta["sop_instance_uids"]
    m = mask.numpy()[0]
    for roi in rois(path):
        value = next(v for v, n in ORGANS.items() if n == roi.name)
        area = 0.0
        for c in roi.contours:
            uvw = to_voxels(c.points, ref.affine)
            np.testing.assert_allclose(uvw[:, 2], sops.index(c.sop_uid), atol=1e-4)
            np.testing.assert_allclose(uvw[:, :2] - np.floor(uvw[:, :2]), 0.5, atol=1e-4)  # voxel edges
            area += polygon_area(uvw[:, :2])
        assert abs(area) == pytest.approx((m == value).sum(), abs=1e-3)


@pytest.mark.parametrize("where", ["axial", "oblique"])
def test_holes_islands_and_border_round_trip(dicom_series, tmp_path, where):
    affine = oblique_affine((0.9, 1.1, 2.0)) if where == "oblique" else None
    _, ref = _series(dicom_series, where, (60, 52, 9), affine=affine)
    m = _holes_and_islands(ref.spatial_shape)
    mask = Volume(m[None], ref.affine, kind="label")
    path, back = _round_trip(ref, mask, tmp_path, {1: "target"})
    _check_round_trip(m, back.numpy()[0], [1])
    contours_per_slice = {}
    for c in rois(path)[0].contours:
        contours_per_slice[c.sop_uid] = contours_per_slice.get(c.sop_uid, 0) + 1
    assert set(contours_per_slice.values()) == {7}  # ring outside, ring hole, inner island, blob, 1 and 2 voxels, strip


def test_xor_geometric_type_reads_back(organs, tmp_path):
    _, ref, mask = organs
    path, back = _round_trip(ref, mask, tmp_path, ORGANS, geometric_type="CLOSEDPLANAR_XOR")
    assert {c.geometric_type for r in rois(path) for c in r.contours} == {"CLOSEDPLANAR_XOR"}
    np.testing.assert_array_equal(back.numpy(), mask.numpy())


def test_anonymised_source_without_type2_attributes_exports_them_empty(anonymised_case, tmp_path):
    ref, mask = anonymised_case
    (path,) = EXPORTERS.build("rtstruct")(mask, tmp_path, "anon", image=ref, labels=ORGANS)
    ds = pydicom.dcmread(path)
    for name in ANONYMISED_AWAY:
        assert name in ds and ds[name].value in (None, ""), name
    back = medseg.read(path, reference=ref, labels={v: [n] for v, n in ORGANS.items()})
    assert set(np.unique(back.numpy())) == set(np.unique(mask.numpy()))


@needs_dciodvfy
def test_anonymised_source_rtstruct_passes_dciodvfy(anonymised_case, tmp_path):
    ref, mask = anonymised_case
    (path,) = EXPORTERS.build("rtstruct")(mask, tmp_path, "anon", image=ref, labels=ORGANS)
    assert dciodvfy_errors(path) == []


@needs_dciodvfy
@pytest.mark.parametrize("where", ["axial", "oblique"])
def test_dciodvfy_reports_no_errors(dicom_series, tmp_path, where):
    from medseg.data import ct_phantom

    affine = oblique_affine((0.9, 1.1, 2.0)) if where == "oblique" else None
    _, ref = _series(dicom_series, where, (48, 40, 8), affine=affine)
    _, label = ct_phantom((48, 40, 8), (0.9, 1.1, 2.0))
    mask = Volume(label.numpy(), ref.affine, kind="label")
    (path,) = EXPORTERS.build("rtstruct")(mask, tmp_path, "c", image=ref, labels=ORGANS)
    assert dciodvfy_errors(path) == []
    with pytest.warns(InputWarning, match="empty"):
        (empty,) = EXPORTERS.build("rtstruct")(
            mask.replace(array=np.zeros_like(mask.numpy())), tmp_path, "e", image=ref
        )
    assert dciodvfy_errors(empty) == []


@needs_dciodvfy
def test_xor_type_is_the_only_dciodvfy_complaint(organs, tmp_path):
    """dicom3tools 2022 predates CLOSEDPLANAR_XOR (DICOM PS3.3 C.8.8.6.3): nothing else is flagged."""
    _, ref, mask = organs
    (path,) = EXPORTERS.build("rtstruct", geometric_type="CLOSEDPLANAR_XOR")(mask, tmp_path, "x", image=ref)
    others = [e for e in dciodvfy_errors(path) if "CLOSEDPLANAR_XOR" not in e]
    assert others == []


@needs_plastimatch
def test_plastimatch_rasterises_medseg_rtstruct(organs, tmp_path):
    folder, ref, mask = organs
    (path,) = EXPORTERS.build("rtstruct")(mask, tmp_path, "c", image=ref, labels=ORGANS)
    run = subprocess.run(
        [PLASTIMATCH, "convert", "--input", str(path), "--referenced-ct", str(folder), "--output-prefix",
         str(tmp_path / "pm"), "--xor-contours"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    m = mask.numpy()[0]
    for value, name in ORGANS.items():
        theirs = medseg.read(tmp_path / "pm" / f"{name}.mha")
        assert theirs.grid.matches(ref.grid, atol=1e-3)
        assert dice(theirs.numpy()[0] > 0, m == value) >= 0.97


@needs_plastimatch
def test_medseg_reads_plastimatch_rtstruct(organs, tmp_path):
    folder, ref, mask = organs
    m = mask.numpy()[0]
    (tmp_path / "masks").mkdir()
    for value, name in ORGANS.items():
        medseg.write(
            Volume((m == value).astype(np.uint8)[None], ref.affine, kind="label"), tmp_path / "masks" / f"{name}.nrrd"
        )
    run = subprocess.run(
        [PLASTIMATCH, "convert", "--input-prefix", str(tmp_path / "masks"), "--referenced-ct", str(folder),
         "--output-dicom", str(tmp_path / "pm")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    (rtss,) = (tmp_path / "pm").glob("rtss*.dcm")
    back = medseg.read(rtss, reference=folder, labels={v: [n] for v, n in ORGANS.items()})
    for value in ORGANS:
        assert dice(back.numpy()[0] == value, m == value) >= 0.97


def test_nifti_image_needs_the_source_series(organs, tmp_path):
    folder, ref, mask = organs
    nifti = ref.replace(meta={"source": "ct.nii.gz"})
    with pytest.raises(OutputError, match=r"c: RTSTRUCT needs the source DICOM series.*rtstruct option source_series"):
        EXPORTERS.build("rtstruct")(mask, tmp_path / "x", "c", image=nifti)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    (path,) = EXPORTERS.build("rtstruct", source_series=str(folder))(mask, tmp_path, "c", image=nifti, labels=ORGANS)
    np.testing.assert_array_equal(medseg.read(path, reference=folder).numpy(), mask.numpy())


def test_pipeline_and_cli_know_the_format(organs, tmp_path, capsys):
    from medseg.cli.main import main
    from medseg.pipeline import Pipeline

    p = Pipeline(input={"labels": ORGANS}, export=[{"rtstruct": {"interpreted_type": "AVOIDANCE"}}])
    assert p.exporters[0].name == "rtstruct" and p.to_dict()["export"][0]["rtstruct"]["interpreted_type"] == "AVOIDANCE"
    folder, _, mask = organs
    mask_path = medseg.write(mask, tmp_path / "pred.nii.gz")
    assert main(["export", str(mask_path), "-r", str(folder), "-f", "rtstruct", "-o", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "pred.rtstruct.dcm"
    assert capsys.readouterr().out.split() == [str(out)]
    np.testing.assert_array_equal(medseg.read(out, reference=folder).numpy(), mask.numpy())
    lone = tmp_path / "elsewhere" / "deeper" / "pred.rtstruct.dcm"  # no series beside it
    lone.parent.mkdir(parents=True)
    lone.write_bytes(out.read_bytes())
    assert main(["export", str(lone), "-f", "nifti", "-o", str(tmp_path / "back")]) == 1
    err = capsys.readouterr().err
    assert "pred.rtstruct.dcm" in err and "reference" in err and len(err.strip().splitlines()) == 1
    assert main(["export", str(out), "-r", str(folder), "-f", "nifti", "-o", str(tmp_path / "back")]) == 0
    np.testing.assert_array_equal(medseg.read(tmp_path / "back" / "pred.nii.gz").numpy(), mask.numpy())


def test_roi_types_follow_the_names_and_an_empty_roi_is_reported(organs, tmp_path):
    from medseg.errors import InputWarning

    _, ref, mask = organs
    labels = {1: "GTV", 2: "Body", 3: "liver"}
    m = mask.numpy().copy()
    m[m == 1] = 0  # no GTV predicted
    with pytest.warns(InputWarning, match=r"case: label 1 \(GTV\) is empty: its RTSTRUCT ROI has no contours"):
        (path,) = EXPORTERS.build("rtstruct")(mask.replace(array=m), tmp_path, "case", image=ref, labels=labels)
    ds = pydicom.dcmread(path)
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["GTV", "EXTERNAL", "ORGAN", "ORGAN"]
    assert "ContourSequence" not in ds.ROIContourSequence[0]
    (fixed,) = EXPORTERS.build("rtstruct", interpreted_type="ORGAN")(
        mask, tmp_path / "o", "case", image=ref, labels=labels
    )
    assert {o.RTROIInterpretedType for o in pydicom.dcmread(fixed).RTROIObservationsSequence} == {"ORGAN"}
