"""RTSTRUCT reading: slice matching, holes, oblique and tilted grids, names → labels, bad input, real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medseg
from medseg.core import Volume, make_affine
from medseg.core.geometry import LPS_TO_RAS
from medseg.errors import DicomError, InputError, InputWarning
from medseg.io.contours import polygon_area, to_patient, to_voxels
from medseg.io.rtstruct import read_rtstruct, rois
from tests.conftest import SAMPLE, oblique_affine

from .rtstruct_files import square, write_rtstruct

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DICOMPYLER = SAMPLE / "rtstruct_dicompyler"


@pytest.fixture
def ct(dicom_series) -> Volume:
    return medseg.read(dicom_series("ct", shape=(24, 20, 10)))


def _expected(shape, boxes) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for value, k, i0, i1, j0, j1 in boxes:
        out[i0:i1, j0:j1, k] = value
    return out


def test_squares_on_voxel_edges_give_exact_voxels(ct, tmp_path):
    rs = write_rtstruct(
        tmp_path / "rs.dcm",
        ct,
        [
            ("Liver", [square(ct, 2, 3.5, 9.5, 4.5, 8.5), square(ct, 3, 3.5, 9.5, 4.5, 8.5, uid=False)]),
            ("Spleen", [square(ct, 5, 14.5, 17.5, 2.5, 6.5)]),
        ],
    )
    vol = medseg.read(rs, reference=ct)
    assert vol.kind == "label" and vol.grid.matches(ct.grid)
    expected = _expected(ct.spatial_shape, [(1, 2, 4, 10, 5, 9), (1, 3, 4, 10, 5, 9), (2, 5, 15, 18, 3, 7)])
    np.testing.assert_array_equal(vol.numpy()[0], expected)
    assert vol.meta["labels"] == {1: "Liver", 2: "Spleen"}
    assert [r["contours"] for r in vol.meta["rois"]] == [2, 1]


def test_holes_islands_and_xor(ct, tmp_path):
    outer = square(ct, 4, 1.5, 15.5, 1.5, 15.5)
    hole = square(ct, 4, 4.5, 10.5, 4.5, 10.5)
    island = (square(ct, 4, 6.5, 8.5, 6.5, 8.5)[0], "", "CLOSEDPLANAR_XOR")
    far = square(ct, 4, 18.5, 19.5, 17.5, 18.5)  # a separate one-voxel island
    rs = write_rtstruct(tmp_path / "rs.dcm", ct, [("Organ", [outer, hole, island, far])])
    m = medseg.read(rs, reference=ct).numpy()[0, :, :, 4]
    expected = np.zeros(m.shape, np.uint8)
    expected[2:16, 2:16] = 1
    expected[5:11, 5:11] = 0
    expected[7:9, 7:9] = 1
    expected[19, 18] = 1
    np.testing.assert_array_equal(m, expected)


def test_oblique_series_by_uid_and_by_position(dicom_series, tmp_path):
    folder = dicom_series("obl", shape=(22, 18, 8), affine=oblique_affine((1.1, 0.9, 2.5)))
    ref = medseg.read(folder)
    assert not np.allclose(np.abs(ref.direction), np.eye(3), atol=0.05)  # really oblique
    idx = np.indices((22, 18)).astype(float)
    organ = ((idx[0] - 11) / 7) ** 2 + ((idx[1] - 9) / 5) ** 2 <= 1
    from medseg.io.contours import trace_polygons

    contours = []
    for k in (2, 3, 4):
        for poly in trace_polygons(organ):
            pts = to_patient(np.column_stack([poly, np.full(len(poly), k)]), ref.affine)
            sop = ref.meta["sop_instance_uids"][k] if k != 3 else ""  # slice 3 matched by position
            contours.append((pts, sop, "CLOSED_PLANAR"))
    rs = write_rtstruct(tmp_path / "rs.dcm", ref, [("GTV", contours)])
    got = medseg.read(rs, reference=folder).numpy()[0]
    for k in range(8):
        np.testing.assert_array_equal(got[:, :, k], organ if k in (2, 3, 4) else 0)


def test_tilted_grid_reference_volume(tmp_path):
    """A gantry-tilted (sheared) grid given as a Volume: points go through the inverse affine."""
    affine = make_affine((1.0, 1.0, 2.0), (10.0, -5.0, 3.0))
    affine[1, 2] = 0.6  # each slice shifted in y: shear
    ref = Volume(np.zeros((1, 16, 16, 6), np.int16), affine, meta={"source": "tilted"})
    contours = [square(ref, k, 3.5, 8.5, 4.5, 10.5) for k in range(1, 5)]
    rs = write_rtstruct(tmp_path / "rs.dcm", ref, [("Tumor", contours)])
    got = read_rtstruct(rs, reference=ref).numpy()[0]
    expected = np.zeros(got.shape, np.uint8)
    expected[4:9, 5:11, 1:5] = 1
    np.testing.assert_array_equal(got, expected)


def test_label_names_synonyms_patterns_and_overlap(ct, tmp_path):
    rs = write_rtstruct(
        tmp_path / "rs.dcm",
        ct,
        [
            ("BODY", [square(ct, 4, 0.5, 20.5, 0.5, 18.5)]),
            ("LIVER_final", [square(ct, 4, 2.5, 9.5, 2.5, 9.5)]),
            ("Lt Kidney", [square(ct, 4, 7.5, 12.5, 7.5, 12.5)]),
        ],
    )
    labels = {1: ["liver", "Liver", "LIVER*"], 2: ["kidney_l", "Kidney_L", "Lt Kidney"]}
    with pytest.warns(InputWarning, match=r"'liver'/'kidney_l' \(4 voxels\)"):
        vol = medseg.read(rs, reference=ct, labels=labels)
    m = vol.numpy()[0, :, :, 4]
    assert (m == 1).sum() == 49 - 4 and (m == 2).sum() == 25  # the higher label wins the overlap
    assert vol.meta["labels"] == {1: "liver", 2: "kidney_l"} and vol.meta["unmapped"] == ["BODY"]
    chans = medseg.read(rs, reference=ct, labels=labels, as_channels=True)
    assert chans.numpy().shape[0] == 2 and chans.numpy()[0].sum() == 49 and chans.numpy()[1].sum() == 25
    assert chans.meta["channels"] == ["liver", "kidney_l"]
    with pytest.raises(DicomError, match=r"rs\.dcm: label 1 .* ambiguous: 'BODY', 'LIVER_final'"):
        medseg.read(rs, reference=ct, labels={1: ["liver", "*"]})
    with pytest.warns(InputWarning, match=r"rs\.dcm: no ROI matches label 3 \('heart'\)"):
        medseg.read(rs, reference=ct, labels={1: ["liver", "LIVER*"], 3: ["heart"]})


def test_skipped_and_off_slice_contours_are_reported(ct, tmp_path):
    point = (to_patient(np.array([[5.0, 5.0, 2.0]]), ct.affine), "", "POINT")
    open_line = (square(ct, 2, 1.5, 4.5, 1.5, 4.5)[0], "", "OPEN_PLANAR")
    off = square(ct, 14, 1.5, 4.5, 1.5, 4.5, uid=False)  # the series has 10 slices
    rs = write_rtstruct(
        tmp_path / "rs.dcm", ct, [("A", [square(ct, 1, 1.5, 3.5, 1.5, 3.5), point, open_line, off]), ("Empty", [])]
    )
    with pytest.warns(InputWarning) as caught:
        vol = medseg.read(rs, reference=ct)
    text = "\n".join(str(w.message) for w in caught)
    assert "ROI 'A': skipped 1 OPEN_PLANAR, 1 POINT contour(s)" in text
    assert "ROI 'A': 1 contour(s) lie off every slice" in text
    assert "ROI 'Empty' has no contours" in text
    assert all(str(rs) in str(w.message) for w in caught)
    assert vol.numpy().sum() == 4


def test_bad_input_is_one_clear_line(ct, tmp_path):
    two_points = (square(ct, 2, 1.5, 4.5, 1.5, 4.5)[0][:2], "", "CLOSED_PLANAR")
    short = write_rtstruct(tmp_path / "short.dcm", ct, [("A", [two_points])])
    other = write_rtstruct(
        tmp_path / "for.dcm", ct, [("A", [square(ct, 1, 1.5, 3.5, 1.5, 3.5)])], frame_of_reference="1.2.3"
    )
    lone = tmp_path / "elsewhere" / "lone"  # neither it nor the folder above holds the series
    lone.mkdir(parents=True)
    alone = write_rtstruct(lone / "rs.dcm", ct, [("A", [square(ct, 1, 1.5, 3.5, 1.5, 3.5)])])
    cases = [
        (lambda: medseg.read(short, reference=ct), r"short\.dcm: ROI 'A' contour 1 has 2 point\(s\); a closed contour"),
        (lambda: medseg.read(other, reference=ct), r"for\.dcm: drawn in frame of reference 1\.2\.3, but the reference"),
        (lambda: medseg.read(alone), r"lone/rs\.dcm: an RT Structure Set .*needs the image series .*reference="),
        (lambda: medseg.read(ct.meta["source_files"][0], reference=ct), r"slice_0000\.dcm: reference apply to DICOM"),
    ]
    for call, pattern in cases:
        with pytest.raises(InputError, match=pattern) as info:
            call()
        assert "\n" not in str(info.value)


def test_reference_found_beside_the_file(dicom_series, tmp_path):
    folder = dicom_series("patient/ct", shape=(16, 14, 6))
    ref = medseg.read(folder)
    rs_dir = folder.parent / "rtstruct"
    rs_dir.mkdir()
    rs = write_rtstruct(rs_dir / "rs.dcm", ref, [("A", [square(ref, 2, 1.5, 5.5, 1.5, 4.5)])])
    vol = medseg.read(rs)
    assert vol.grid.matches(ref.grid) and vol.numpy().sum() == 12
    listed = {s.modality: s for s in medseg.find_series(folder.parent)}
    assert listed["RTSTRUCT"].references == (ref.meta["series_uid"],) and listed["RTSTRUCT"].names == ("A",)
    assert "1 ROI/segment(s) on series" in listed["RTSTRUCT"].summary()


def test_pydicom_sample_rtstruct(tmp_path):
    """pydicom's rtstruct.dcm (no preamble): a 400×300 mm box on 3 slices, two isocentre POINTs."""
    path = TEST_FILES / "rtstruct.dcm"
    assert [r.name for r in rois(path)] == ["patient", "Isocenter 1", "Isocenter 2"]
    lps = make_affine((5.0, 5.0, 10.0), (-250.0, -200.0, -200.0))  # LPS grid, 101×81×3 covering the box
    ref = Volume(
        np.zeros((1, 101, 81, 3), np.int16),
        LPS_TO_RAS @ lps,
        meta={"source": "grid", "frame_of_reference_uid": "1.2.826.0.1.3680043.8.498.2010020400001.2"},
    )
    with pytest.warns(InputWarning, match="skipped 1 POINT contour"):
        vol = medseg.read(path, reference=ref)
    per_slice = vol.numpy()[0].sum(axis=(0, 1))
    np.testing.assert_array_equal(per_slice, [81 * 61] * 3)  # centres on the box edges count as inside
    assert vol.meta["labels"] == {1: "patient", 2: "Isocenter 1", 3: "Isocenter 2"}


@pytest.mark.skipif(not DICOMPYLER.exists(), reason="dicompyler-core sample not shipped")
def test_dicompyler_planning_system_rtstruct():
    """A real planning-system RTSTRUCT on its one shipped CT slice: BODY matches its polygon areas."""
    rs, ct_file = DICOMPYLER / "rtss.dcm", DICOMPYLER / "ct.0.dcm"
    names = [r.name for r in rois(rs)]
    assert names[:3] == ["BODY", "Areola", "Borders"] and len(names) == 10
    ct = medseg.read(ct_file)
    with pytest.warns(InputWarning, match=r"ROI 'BODY': 137 contour\(s\) lie off every slice"):
        vol = medseg.read(rs, reference=ct, labels={1: ["body", "BODY"]})
    body = rois(rs)[0]
    on_slice = [c for c in body.contours if c.sop_uid == ct.meta["sop_instance_uids"][0]]
    assert len(on_slice) == 4
    polys = [to_voxels(c.points, ct.affine)[:, :2] for c in on_slice]
    from medseg.io.contours import fill_polygons

    expected = fill_polygons(polys, ct.spatial_shape[:2])
    np.testing.assert_array_equal(vol.numpy()[0, :, :, 0], expected)
    area = sum(abs(polygon_area(p)) for p in polys[:2]) - sum(abs(polygon_area(p)) for p in polys[2:])
    perimeter = sum(np.linalg.norm(np.diff(p, axis=0, append=p[:1]), axis=1).sum() for p in polys)
    assert abs(int(expected.sum()) - area) < 0.5 * perimeter  # voxel count ≈ enclosed area
    with pytest.warns(InputWarning, match="ROI 'Areola' has no contours"):
        medseg.read(rs, reference=ct, labels={2: ["Areola"]})


def test_dicompyler_series_is_found_beside_the_rtstruct(tmp_path):
    if not DICOMPYLER.exists():
        pytest.skip("dicompyler-core sample not shipped")
    shutil.copy(DICOMPYLER / "rtss.dcm", tmp_path / "rtss.dcm")
    shutil.copy(DICOMPYLER / "ct.0.dcm", tmp_path / "ct.0.dcm")
    with pytest.warns(InputWarning):
        found = medseg.read(tmp_path / "rtss.dcm", labels={1: ["BODY"]})  # the slice is found beside it
    with pytest.warns(InputWarning):
        given = medseg.read(tmp_path / "rtss.dcm", reference=tmp_path / "ct.0.dcm", labels={1: ["BODY"]})
    assert found.grid.matches(given.grid) and found.numpy().sum() == given.numpy().sum() > 0
