"""Case discovery: folders (files, nnU-Net channels, DICOM sub-folders), manifests, safe ids and paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medseg.batch import Case, check_case_id, discover_cases, output_path, sanitize_case_id
from medseg.errors import ConfigError, InputError, OutputError
from tests.batch.conftest import write_cases


def test_folder_one_case_per_file_sorted_and_lists_what_it_skips(tmp_path: Path) -> None:
    write_cases(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "raw.dcm").write_bytes(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")  # DICOM without preamble
    (tmp_path / ".case_9.nii.gz.tmp.nii.gz").write_bytes(b"half written")
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["case_000", "case_001", "case_002"]
    assert cases[1].images == (tmp_path / "case_001.nii.gz",)
    assert cases[1].reference is None
    reasons = {p.name: why for p, why in cases.skipped}
    assert set(reasons) == {"notes.txt", "meta.json", "raw.dcm"}  # hidden temp files are not inputs
    assert "not an image" in reasons["notes.txt"]
    assert "DICOM without the 128-byte preamble" in reasons["raw.dcm"]


def test_nnunet_channels_grouped_in_index_order(tmp_path: Path) -> None:
    for name in ("BRATS_001_0001", "BRATS_001_0000", "BRATS_002_0000", "BRATS_002_0001"):
        (tmp_path / f"{name}.nii.gz").write_bytes(b"x")
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BRATS_001", "BRATS_002"]
    assert [p.name for p in cases[0].images] == ["BRATS_001_0000.nii.gz", "BRATS_001_0001.nii.gz"]


def test_missing_channel_index_is_an_error(tmp_path: Path) -> None:
    for name in ("A_0000", "A_0002"):
        (tmp_path / f"{name}.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match=r"lacks A_0001"):
        discover_cases(tmp_path)


def test_two_inputs_mapping_to_one_id_lists_both(tmp_path: Path) -> None:
    (tmp_path / "p 1.nii.gz").write_bytes(b"x")
    (tmp_path / "p_1.nrrd").write_bytes(b"x")
    with pytest.raises(InputError, match=r"'p 1.nii.gz' and 'p_1.nrrd' both map to case id 'p_1'"):
        discover_cases(tmp_path)


def test_dicom_subfolders_are_cases(tmp_path: Path, dicom_series) -> None:
    src = tmp_path / "study"
    src.mkdir()
    a = dicom_series("ct_a", shape=(8, 8, 3))
    a.rename(src / "patient a")
    nested = src / "b" / "series1"
    nested.parent.mkdir()
    dicom_series("ct_b", shape=(8, 8, 3)).rename(nested)
    (src / "empty").mkdir()
    cases = discover_cases(src, series="1.2.3", case_ids="folder")
    assert [c.case_id for c in cases] == ["b", "patient_a"]
    assert cases[1].images == (src / "patient a",)
    assert cases[0].extra == {"series_uid": "1.2.3"}


def test_folder_directly_holding_dicom_is_one_case(dicom_series) -> None:
    folder = dicom_series("CT_head", shape=(8, 8, 3), patient_id="LUNG005")
    cases = discover_cases(folder)
    assert len(cases) == 1
    assert cases[0].case_id == "LUNG005"  # named by the patient, not the folder
    assert cases[0].images == (folder,)
    assert discover_cases(folder, case_ids="folder")[0].case_id == "CT_head"
    assert discover_cases(folder, case_ids="series")[0].case_id == "LUNG005_20240101_S1"


def test_dicom_cases_are_named_by_patient_and_series_when_a_patient_has_several(tmp_path: Path, dicom_series) -> None:
    src = tmp_path / "export"
    src.mkdir()
    for folder, patient, number in (("1", "pA/01", 1), ("2", "pB/01", 1), ("3", "pC/01", 2), ("4", "pC/01", 7)):
        dicom_series(folder, shape=(8, 8, 3), patient_id=patient, series_number=number).rename(src / f"CT{folder}")
    dicom_series("anon", shape=(8, 8, 3), patient_id="").rename(src / "anon")
    ids = [c.case_id for c in discover_cases(src)]
    # sanitised PatientIDs; the patient with two series gets study date and series number; no PatientID → folder
    assert ids == ["anon", "pA_01", "pB_01", "pC_01_20240101_S2", "pC_01_20240101_S7"]


def test_two_copies_of_one_series_are_refused_not_merged(tmp_path: Path, dicom_series) -> None:
    src = tmp_path / "src"
    src.mkdir()
    uid = "1.2.826.0.1.3680043.8.498.1"
    for name in ("a", "b"):  # two copies of the same series: nothing tells them apart
        dicom_series(name, shape=(8, 8, 3), series_uid=uid).rename(src / name)
    with pytest.raises(InputError, match="'a/' and 'b/' both map to case id 'PHANTOM_20240101_S1_1'"):
        discover_cases(src)


def test_unknown_case_id_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--case-ids"):
        discover_cases(tmp_path, case_ids="name")


def test_single_files_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no cases found"):
        discover_cases(tmp_path)
    f = tmp_path / "ct scan_0000.nii.gz"
    f.write_bytes(b"x")
    (case,) = discover_cases(f)
    assert case.case_id == "ct_scan" and case.images == (f,)
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(InputError, match=r"notes.txt: not an image medseg reads"):
        discover_cases(txt)
    with pytest.raises(InputError, match="no such file"):
        discover_cases(tmp_path / "missing")


def test_manifest_channels_reference_extra_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "case_id,image,image2,reference,site\n"
        "c1,imgs/c1_t1.nii.gz,imgs/c1_t2.nii.gz,labels/c1.nii.gz,A\n"
        f"c 2,{tmp_path / 'abs.nii.gz'},t2.nii.gz,,B\n"
    )
    cases = discover_cases(tmp_path / "m.csv")
    assert [c.case_id for c in cases] == ["c1", "c_2"]
    c1, c2 = cases
    assert c1.images == (tmp_path / "imgs/c1_t1.nii.gz", tmp_path / "imgs/c1_t2.nii.gz")
    assert c1.reference == tmp_path / "labels/c1.nii.gz"
    assert c1.extra == {"site": "A"}
    assert c2.images[0] == tmp_path / "abs.nii.gz"
    assert c2.reference is None


@pytest.mark.parametrize("bad_id", ["../evil", "/etc/passwd", "..", "a/b", "a\\b"])
def test_manifest_case_ids_that_are_paths_are_refused(tmp_path: Path, bad_id: str) -> None:
    (tmp_path / "m.csv").write_text(f"case_id,image\n{bad_id},x.nii.gz\n")
    with pytest.raises(InputError, match=r"m.csv:2"):
        discover_cases(tmp_path / "m.csv")


def test_manifest_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,img\nc1,x\n")
    with pytest.raises(InputError, match="has no 'image' column"):
        discover_cases(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,image,image2\nc1,x.nii.gz,\n")
    with pytest.raises(InputError, match=r"m.csv:2: column 'image2' is empty"):
        discover_cases(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,image\nc1,x.nii.gz\nc1,y.nii.gz\n")
    with pytest.raises(InputError, match=r"m.csv:3: case id .c1. is also on line 2"):
        discover_cases(tmp_path / "m.csv")


def test_sanitize_case_id() -> None:
    assert sanitize_case_id("Müller, Hans (1).nii") == "M_ller__Hans__1_.nii"
    assert sanitize_case_id("..x") == "x"
    assert sanitize_case_id("_ct") == "ct"
    assert sanitize_case_id("a..b") == "a_b"
    long_a, long_b = "p" * 200 + "a", "p" * 200 + "b"
    assert len(sanitize_case_id(long_a)) == 128
    assert sanitize_case_id(long_a) != sanitize_case_id(long_b)
    for bad in ("", ".", "..", "__"):
        with pytest.raises(InputError):
            sanitize_case_id(bad)


@pytest.mark.parametrize("bad", ["../x", "/x", "a/b", "..", "_1_", "_ct", "a..b", "x" * 129])
def test_case_constructor_refuses_ids_that_cannot_name_outputs(bad: str) -> None:
    with pytest.raises(OutputError, match="cannot name output files"):
        Case(bad, (Path("x.nii.gz"),))


@pytest.mark.parametrize("case_id", ["_1_", "_ct", "a..b", "x" * 200])
def test_batch_and_export_agree_on_case_ids(case_id: str, tmp_path: Path) -> None:
    """An id the batch accepts is one the exporters accept (it used to fail after inference had run)."""
    import numpy as np

    from medseg.core.volume import Volume
    from medseg.export import export_all

    cid = sanitize_case_id(case_id)
    Case(cid, (Path("x.nii.gz"),))
    mask = Volume(np.zeros((1, 4, 4, 2), np.uint8), np.eye(4), kind="label")
    with pytest.warns(UserWarning, match="empty"):
        paths = export_all(mask, tmp_path, cid, ["nifti"])
    assert paths[0].parent == tmp_path


@pytest.mark.parametrize("name", ["../x.nii.gz", "/tmp/x.nii.gz", "a/../../x.nii.gz", ""])
def test_output_path_cannot_escape(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError):
        output_path(tmp_path, name)


def test_output_path_inside(tmp_path: Path) -> None:
    assert output_path(tmp_path, "sub/c1.nii.gz") == (tmp_path / "sub/c1.nii.gz").resolve()


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_sanitized_name_stays_inside_the_output_folder(name: str) -> None:
    try:
        cid = sanitize_case_id(name)
    except InputError:
        return
    check_case_id(cid)
    root = Path("/tmp/medseg-out").resolve()
    assert output_path(root, f"{cid}.nii.gz").parent == root
    assert output_path(root, f"{cid}.provenance.json").parent == root


def test_predict_and_train_read_one_manifest_grammar(tmp_path: Path) -> None:
    """No case_id column, channels out of column order, 'reference' for 'label': both readers agree."""
    from medseg.training import load_dataset

    write_cases(tmp_path / "imgs", 2)
    (tmp_path / "m.csv").write_text(
        "image2,image,reference,site\n"
        "imgs/case_001.nii.gz,imgs/case_000.nii.gz,imgs/case_001.nii.gz,A\n"
        "imgs/case_000.nii.gz,imgs/case_001.nii.gz,imgs/case_000.nii.gz,B\n"
    )
    batch = discover_cases(tmp_path / "m.csv")
    training = load_dataset(tmp_path / "m.csv")
    assert [c.case_id for c in batch] == [c.case_id for c in training.cases] == ["case_000", "case_001"]
    for b, t in zip(batch, training.cases):
        assert list(b.images) == list(t.images) and b.reference == t.label
    assert batch[0].images[0].name == "case_000.nii.gz" and batch[0].extra == {"site": "A"}
    (tmp_path / "bad.csv").write_text("image,image_t2\na.nii.gz,b.nii.gz\n")
    for reader in (discover_cases, load_dataset):
        with pytest.raises(InputError, match="column 'image_t2': channels are named image, image2"):
            reader(tmp_path / "bad.csv")
