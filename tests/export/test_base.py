"""The exporter contract: registry, case ids, grid checks, labels, empty masks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from medseg.core import Volume
from medseg.errors import ConfigError, GeometryError, InputError, InputWarning, OutputError
from medseg.export import EXPORTERS, build_exporters, check_case_id, export_all, label_table, load_labels, prepare

ALL = ["dicom_seg", "html", "nifti", "nrrd", "obj", "ply", "png", "rtstruct", "seg_nrrd", "stats", "stl"]
NEED_DICOM = ("dicom_seg", "rtstruct")  # tested with a DICOM source in test_dicom_seg.py / test_rtstruct.py


def test_registry_lists_every_format():
    assert EXPORTERS.names() == ALL


@pytest.mark.parametrize("name", [n for n in ALL if n not in NEED_DICOM])
def test_every_exporter_writes_inside_out_dir(name, phantom, tmp_path):
    image, label = phantom
    paths = EXPORTERS.build(name)(label, tmp_path / "out", "case_1", image=image, labels={1: "liver"})
    assert paths, f"{name} wrote nothing"
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0
        assert p.resolve().parent == (tmp_path / "out").resolve()
        assert p.name.startswith("case_1")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.mark.parametrize("name", [n for n in ALL if n not in NEED_DICOM])
def test_every_exporter_handles_an_empty_mask(name, phantom, tmp_path):
    image, label = phantom
    empty = label.replace(array=np.zeros_like(label.numpy()))
    with pytest.warns(InputWarning, match="empty"):
        paths = EXPORTERS.build(name)(empty, tmp_path, "empty", image=image, labels={1: "liver"})
    for p in paths:
        assert p.is_file()
    if name in ("stl", "obj", "ply"):
        assert paths == []  # no surface to write
    else:
        assert paths


@pytest.mark.parametrize("case_id", ["../x", "/abs", "a/b", "..", ".hidden", "a b", "ca$e", "", "x" * 200, "a..b"])
def test_unsafe_case_ids_are_rejected(case_id, phantom, tmp_path):
    _, label = phantom
    with pytest.raises(OutputError, match="case id"):
        EXPORTERS.build("nifti")(label, tmp_path, case_id)
    assert list(tmp_path.iterdir()) == []


def test_safe_case_ids_pass():
    for cid in ("case_001", "BraTS-GLI-00001-000", "ct.1"):
        assert check_case_id(cid) == cid


def test_mask_on_another_grid_names_both(phantom, tmp_path):
    image, label = phantom
    image = image.replace(meta={"source": "ct.nii.gz"})
    moved = label.replace(affine=label.affine @ np.diag([1.0, 1.0, 2.0, 1.0]), meta={"source": "mask.nii.gz"})
    with pytest.raises(GeometryError, match=r"mask\.nii\.gz.*ct\.nii\.gz"):
        export_all(moved, tmp_path, "c", ["nifti"], image=image)
    assert not tmp_path.joinpath("c.nii.gz").exists()


def test_unnamed_labels_get_generated_names(phantom, tmp_path):
    _, label = phantom
    case = prepare(label, tmp_path, "c", labels={2: "spleen", 7: "absent"})
    assert case.labels == {1: "label_1", 2: "spleen", 3: "label_3", 4: "label_4", 7: "absent"}
    assert case.present == [1, 2, 3, 4]


def test_label_table_accepts_string_keys():
    assert label_table([1, 2], {"1": "liver"}) == {1: "liver", 2: "label_2"}  # type: ignore[dict-item]


def test_label_table_rejects_bad_names():
    with pytest.raises(ConfigError, match="share the name"):
        label_table([1, 2], {1: "a", 2: "a"})
    with pytest.raises(ConfigError, match="must be 1-64"):
        label_table([1], {1: "../etc"})


@pytest.mark.parametrize(
    "content",
    [{"1": "liver", "2": "spleen"}, {"labels": {"background": 0, "liver": 1, "spleen": 2}}, ["bg", "liver", "spleen"]],
)
def test_load_labels_formats(content, tmp_path):
    p = tmp_path / "labels.json"
    p.write_text(json.dumps(content))
    assert load_labels(p) == {1: "liver", 2: "spleen"}


def test_load_labels_errors(tmp_path):
    with pytest.raises(InputError, match="no such labels file"):
        load_labels(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_labels(bad)
    bad.write_text(json.dumps({"liver": "one"}))
    with pytest.raises(ConfigError, match="neither"):
        load_labels(bad)


def test_build_exporters_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'nifti'"):
        build_exporters(["nifty"])
    with pytest.raises(ConfigError, match="did you mean 'smoothing'"):
        build_exporters([{"stl": {"smothing": 1.0}}])
    built = build_exporters(["png", {"stl": {"coordinates": "RAS"}}])
    assert [e.name for e in built] == ["png", "stl"]
    assert built[1].options() == {"coordinates": "RAS", "smoothing": 1.0, "decimate": None}


def test_export_all_runs_each_exporter_once(phantom, tmp_path):
    image, label = phantom
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = export_all(label, tmp_path, "c", ["nifti", "stats", {"png": {"dpi": 50}}], image=image)
    assert sorted(p.name for p in paths) == sorted(
        ["c.nii.gz", "c.labels.json", "c_stats.csv", "c_stats.json", "c_preview.png"]
    )


def test_probability_masks_are_reduced_by_argmax(phantom, tmp_path):
    _, label = phantom
    onehot = np.eye(5, dtype=np.float32)[label.numpy()[0]].transpose(3, 0, 1, 2)
    probs = Volume(onehot * 0.9 + 0.02, label.affine, kind="probability")
    case = prepare(probs, tmp_path, "p")
    np.testing.assert_array_equal(case.label_map, label.numpy()[0])


def test_fractional_single_channel_mask_is_rejected(phantom, tmp_path):
    _, label = phantom
    bad = label.replace(array=label.numpy().astype(np.float32) * 0.5)
    with pytest.raises(InputError, match="non-integer"):
        prepare(bad, Path(tmp_path), "x")
