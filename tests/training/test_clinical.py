"""Training from clinical exports: DICOM trees with RTSTRUCT/SEG, CSV manifests, nnU-Net conversion, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.core import Volume
from medseg.data import ct_phantom
from medseg.data.dicom_series import write_series
from medseg.errors import ConfigError, InputError, InputWarning
from medseg.export import EXPORTERS
from medseg.training import load_dataset
from medseg.training.cache import prepare_dataset, read_case

SPEC = {1: ["liver", "Liver", "LIVER*"], 2: ["spleen", "Spleen"]}
SHAPE, SPACING = (32, 28, 12), (1.5, 1.5, 3.0)


def _patient(root: Path, i: int, series_dir: str, label_dir: str, names: dict[int, str], fmt: str = "rtstruct"):
    """A CT series of patient ``i`` and its labels (liver 1, spleen 2) as RTSTRUCT or SEG with ROI ``names``."""
    img, lab = ct_phantom(SHAPE, SPACING, seed=i)
    folder = root / series_dir
    write_series(img, folder, patient_id=f"PAT{i}", rescale_intercept=-1024)
    ref = medseg.read(folder)
    m = np.where(lab.numpy()[0] <= 2, lab.numpy()[0], 0).astype(np.uint8)
    keep = np.isin(m, list(names))
    mask = Volume(np.where(keep, m, 0)[None].astype(np.uint8), ref.affine, kind="label")
    exporter = "dicom_seg" if fmt == "seg" else "rtstruct"
    (path,) = EXPORTERS.build(exporter)(mask, root / label_dir, f"pat{i}", image=ref, labels=names)
    return folder, path, np.where(keep, m, 0)


@pytest.fixture
def export(tmp_path):
    """Seven patients in mixed layouts; three of them cannot be used (and say why)."""
    root = tmp_path / "export"
    masks = {}
    _, _, masks["PAT0"] = _patient(root, 0, "PAT0/STUDY/CT", "PAT0/STUDY/RS", {1: "Liver", 2: "Spleen"})
    _, _, masks["PAT1"] = _patient(root, 1, "flat", "flat", {1: "LIVER_final", 2: "spleen"})  # one folder for all
    _, _, masks["PAT2"] = _patient(root, 2, "images/p2", "structures/p2", {1: "liver", 2: "Spleen"}, fmt="seg")
    _patient(root, 3, "PAT3/CT", "PAT3/RS", {1: "Liver"})  # no spleen
    _patient(root, 4, "PAT4/CT", "PAT4/RS", {1: "LIVER_a", 2: "LIVER_b"})  # two ROIs match only "LIVER*"
    folder, _, _ = _patient(root, 5, "PAT5/CT", "PAT5/RS", {1: "Liver", 2: "Spleen"})
    ref5 = medseg.read(folder)
    mask5 = Volume(np.zeros((1, *SHAPE), np.uint8), ref5.affine, kind="label")
    mask5.numpy()[0, 10:20, 10:20, 3:8] = 1
    mask5.numpy()[0, 2:5, 2:5, 3:8] = 2
    EXPORTERS.build("rtstruct")(mask5, root / "PAT5/RS2", "second", image=ref5, labels={1: "Liver", 2: "Spleen"})
    return root, masks


def test_cases_are_found_through_uids_in_any_layout(export):
    root, masks = export
    with pytest.warns(InputWarning) as caught:
        ds = load_dataset(root, labels=SPEC)
    assert [c.case_id for c in ds.cases] == ["PAT0", "PAT1", "PAT2"]
    assert ds.labels == {0: "background", 1: "liver", 2: "spleen"} and ds.channels == ["CT"]
    assert len(ds.skipped) == 3 and [str(w.message) for w in caught] == ds.skipped
    pat3, pat4, pat5 = ds.skipped
    assert pat3.startswith("PAT3: ") and "pat3.rtstruct.dcm: no ROI matches label 2 ('spleen', 'Spleen')" in pat3
    assert (
        pat4.startswith("PAT4: ") and "label 1 ('liver', 'Liver', 'LIVER*') is ambiguous: 'LIVER_a', 'LIVER_b'" in pat4
    )
    assert pat5.startswith("PAT5: 2 RTSTRUCT/SEG objects reference its series") and "keep one" in pat5
    for case in ds.cases:
        image, label = read_case(case)
        assert label.grid.matches(image.grid)
        np.testing.assert_array_equal(label.numpy()[0], masks[case.case_id])


def test_cached_cases_and_their_key(export, tmp_path):
    root, masks = export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        ds = load_dataset(root, labels=SPEC)
        other = load_dataset(root, labels={1: ["Liver", "LIVER*", "liver"], 2: ["Spleen", "spleen"]})
    cached = prepare_dataset(ds, None, tmp_path / "cache")
    for c in cached:
        np.testing.assert_array_equal(c.label(mmap=False)[0], masks[c.case_id])
    again = prepare_dataset(other, None, tmp_path / "cache")  # another mapping: cached anew
    assert {c.folder for c in again}.isdisjoint({c.folder for c in cached})
    tolerant = prepare_dataset(ds, None, tmp_path / "cache", spacing_tolerance=0.2)  # another reader option: anew
    assert {c.folder for c in tolerant}.isdisjoint({c.folder for c in cached})


def test_labels_are_required_and_bad_roots_are_clear(export, tmp_path):
    root, _ = export
    with pytest.raises(ConfigError, match=r"export: RTSTRUCT/SEG labels need the names .* input\.labels"):
        load_dataset(root)
    (tmp_path / "images_only").mkdir()
    write_series(ct_phantom(SHAPE, SPACING)[0], tmp_path / "images_only" / "ct")
    with pytest.raises(InputError, match=r"images_only: 1 image series but no RTSTRUCT or SEG object"):
        load_dataset(tmp_path / "images_only", labels=SPEC)
    with pytest.warns(InputWarning), pytest.raises(InputError, match=r"export: no usable case \(6 skipped"):
        load_dataset(root, labels={1: ["heart"]})


def test_csv_label_column_points_at_rtstruct_and_seg(export, tmp_path):
    root, masks = export
    rows = [
        "case_id,image,label",
        f"a,{root / 'PAT0/STUDY/CT'},{root / 'PAT0/STUDY/RS/pat0.rtstruct.dcm'}",
        f"b,{root / 'images/p2'},{root / 'structures/p2/pat2.seg.dcm'}",
        f"c,{root / 'PAT3/CT'},{root / 'PAT3/RS/pat3.rtstruct.dcm'}",
        f"d,{root / 'PAT3/CT'},{root / 'PAT0/STUDY/RS/pat0.rtstruct.dcm'}",  # paired with the wrong series
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(InputWarning):
        ds = load_dataset(tmp_path / "m.csv", labels=SPEC)
    assert [c.case_id for c in ds.cases] == ["a", "b"] and ds.labels[2] == "spleen"
    assert "c: " in ds.skipped[0] and "no ROI matches label 2" in ds.skipped[0]
    assert ds.skipped[1].startswith("d: ") and "which is not in" in ds.skipped[1]
    np.testing.assert_array_equal(read_case(ds.cases[1])[1].numpy()[0], masks["PAT2"])


def _medseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_dataset_convert_writes_nnunet_layout_and_reuses_unchanged_cases(export, tmp_path, capsys):
    from medseg.cli.main import main

    root, masks = export
    (tmp_path / "labels.yaml").write_text('1: [liver, Liver, "LIVER*"]\n2: [spleen, Spleen]\n')
    out = tmp_path / "Dataset501_Liver"
    args = ["dataset", "convert", str(root), "-o", str(out), "--labels", str(tmp_path / "labels.yaml")]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "3 converted, 0 unchanged, 0 removed, 3 skipped" in printed.out
    assert printed.err.count("skipped: PAT") == 3
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "spleen": 2} and meta["numTraining"] == 3
    with pytest.warns(InputWarning):
        sources = {c.case_id: c for c in load_dataset(root, labels=SPEC).cases}
    converted = load_dataset(out)
    assert [c.case_id for c in converted.cases] == sorted(sources)
    for case in converted.cases:
        image, label = read_case(case)
        assert image.grid.matches(medseg.read(sources[case.case_id].images[0]).grid)
        np.testing.assert_array_equal(label.numpy()[0], masks[case.case_id])
    assert main(args) == 0 and "0 converted, 3 unchanged" in capsys.readouterr().out
    touched = root / "PAT0/STUDY/RS/pat0.rtstruct.dcm"
    touched.write_bytes(touched.read_bytes())  # same bytes, new mtime: still unchanged (content hash)
    assert main(args) == 0 and "0 converted, 3 unchanged" in capsys.readouterr().out
    (root / "moved").mkdir()
    for f in (root / "flat").iterdir():
        f.rename(root / "moved" / f.name)
    assert main(args) == 0 and "0 converted, 3 unchanged" in capsys.readouterr().out  # same bytes elsewhere
    _patient(root, 0, "PAT0/STUDY/CT2", "PAT0/STUDY/RS2", {1: "Liver", 2: "Spleen"})  # a second series of PAT0
    assert main(args) == 0
    assert "2 converted, 2 unchanged, 1 removed" in capsys.readouterr().out  # PAT0 → PAT0_<series>, twice
    names = sorted(f.name for f in (out / "labelsTr").iterdir())
    assert "PAT0.nii.gz" not in names and sum(n.startswith("PAT0_") for n in names) == 2
    assert len(list((out / "imagesTr").iterdir())) == json.loads((out / "dataset.json").read_text())["numTraining"] == 4
    bad = [*args[:4], str(tmp_path / "liver"), *args[5:]]
    assert main(bad) == 1
    err = capsys.readouterr().err.strip()
    assert "DatasetNNN_Name" in err and len(err.splitlines()) == 1


TINY = """
name: tiny-clinical
input: {modality: CT, channels: [CT], labels: {1: [liver, Liver, "LIVER*"], 2: [spleen, Spleen]}}
preprocess:
  - clip: {low: -160, high: 240}
  - scale_intensity: {low: -160, high: 240}
network: {name: unet, options: {n_stages: 2, base_channels: 4, max_channels: 8}}
training: {patch_size: [16, 16, 8], batch_size: 2, max_epochs: 1, iterations_per_epoch: 2,
           device: cpu, progress: false, optimizer: adamw, lr: 0.003}
inference: {patch_size: [16, 16, 8], batch_size: 4, device: cpu}
export:
  - nifti: {}
  - rtstruct: {}
"""


@pytest.mark.slow
def test_train_from_dicom_export_predict_and_write_rtstruct(export, tmp_path):
    """DICOM series + medseg RTSTRUCTs → medseg train --data → predict a series → RTSTRUCT → read back."""
    root, _ = export
    (tmp_path / "tiny.yaml").write_text(TINY)
    runs = tmp_path / "runs"
    r = _medseg("train", str(tmp_path / "tiny.yaml"), "--data", str(root), "-o", str(runs), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout)
    skipped = (runs / "skipped_cases.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in skipped] == ["PAT3", "PAT4", "PAT5"]
    series = root / "PAT3" / "CT"  # a series the network has not seen
    out = tmp_path / "pred"
    r = _medseg("predict", info["best_checkpoint"], "-i", str(series), "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    (rtss,) = out.glob("*.rtstruct.dcm")
    (nifti,) = out.glob("*.nii.gz")
    ref = medseg.read(series)
    predicted = medseg.read(nifti)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)  # an untrained network may leave a label empty
        back = medseg.read(rtss, reference=series, labels=SPEC)
    assert back.grid.matches(ref.grid) and predicted.grid.matches(ref.grid)
    np.testing.assert_array_equal(back.numpy(), predicted.numpy())
    assert [r_["name"] for r_ in back.meta["rois"]] == ["liver", "spleen"]


SWAPPED = TINY.replace(
    'labels: {1: [liver, Liver, "LIVER*"], 2: [spleen, Spleen]}', "labels: {1: [spleen, Spleen], 2: [liver, Liver]}"
)


@pytest.mark.slow
def test_every_fold_on_a_clinical_export_chooses_postprocessing_with_the_mapping(tmp_path, capsys):
    """``train --fold all`` on an RTSTRUCT + SEG export: the out-of-fold references are read like training reads them
    (mapping order, not ROI order; the SEG on the image grid, not on its own frames)."""
    from medseg.cli.main import main

    root = tmp_path / "export"
    _, _, liver_first = _patient(root, 0, "PAT0/CT", "PAT0/RS", {1: "Liver", 2: "Spleen"})  # ROI order: liver, spleen
    seg_image, _, _ = _patient(root, 1, "PAT1/CT", "PAT1/SEG", {1: "Liver", 2: "Spleen"}, fmt="seg")
    (tmp_path / "tiny.yaml").write_text(SWAPPED)  # the mapping: spleen 1, liver 2
    runs = tmp_path / "runs"
    args = ["train", str(tmp_path / "tiny.yaml"), "--data", str(root), "-o", str(runs), "--fold", "all", "--folds", "2"]
    assert main(args) == 0, capsys.readouterr().err[-3000:]
    assert (runs / "final_pipeline.yaml").is_file() and (runs / "postprocessing.json").is_file()
    reference = medseg.read(runs / "cv_predictions" / "PAT0_reference.nii.gz").numpy()[0]
    np.testing.assert_array_equal(reference, np.choose(liver_first, [0, 2, 1]))  # liver ROI → 2, spleen ROI → 1
    seg_reference = medseg.read(runs / "cv_predictions" / "PAT1_reference.nii.gz")
    assert seg_reference.grid.matches(medseg.read(seg_image).grid)
