"""Security: nothing loaded is executed, outputs stay inside the output folder, no patient names leak."""

from __future__ import annotations

import ast
import builtins
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from medseg.batch import check_case_id, discover_cases, output_path, sanitize_case_id
from medseg.errors import CheckpointError, ConfigError, InputError, OutputError
from medseg.export import base as export_base
from medseg.networks import build_network
from medseg.pipeline import Pipeline
from medseg.training import load_checkpoint, save_checkpoint
from tests.robustness.conftest import ROOT, assert_empty, expect_error

PACKAGE = ROOT / "medseg"
MARKER_NAME = "Zyxwv^Markerpatient"
MARKER_ID = "MRN-7731-MARKER"


# ---- no unsafe loaders in the package (AST scan, so net.eval() is not confused with eval()) -----


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            found.append((node.lineno, f"{func.id}()"))
        if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
            continue
        owner, name = func.value.id, func.attr
        if owner == "torch" and name == "load":
            weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append((node.lineno, "torch.load without weights_only=True"))
        if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "full_load_all"):
            found.append((node.lineno, f"yaml.{name}"))
        if owner in ("pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve") and name in (
            "load",
            "loads",
            "open",
            "Unpickler",
        ):
            found.append((node.lineno, f"{owner}.{name}"))
        if owner == "numpy" or owner == "np":
            allow = next((k.value for k in node.keywords if k.arg == "allow_pickle"), None)
            if name == "load" and isinstance(allow, ast.Constant) and allow.value is True:
                found.append((node.lineno, "np.load(allow_pickle=True)"))
        if any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords):
            found.append((node.lineno, f"{owner}.{name}(shell=True)"))
    return found


def test_package_has_no_unsafe_loaders() -> None:
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    for f in files:
        for line, what in _unsafe_calls(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            problems.append(f"{f.relative_to(ROOT)}:{line}: {what}")
    assert not problems, "unsafe loading in medseg:\n" + "\n".join(problems)


def test_scanner_finds_what_it_looks_for() -> None:
    src = "import torch, yaml, pickle\ntorch.load(p)\nyaml.load(t)\neval(s)\npickle.loads(b)\nnet.eval()\n"
    found = [what for _, what in _unsafe_calls(ast.parse(src))]
    assert found == ["torch.load without weights_only=True", "yaml.load", "eval()", "pickle.loads"]


# ---- malicious payloads ----------------------------------------------------------------------


class _Payload:
    """Unpickling this creates ``marker`` (what an attacker's os.system call would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": "medseg-checkpoint", "format_version": 1, "network_name": "unet", "payload": _Payload(marker)}, path
    )
    assert not marker.exists()
    return path, marker


def test_checkpoint_with_pickled_callable_is_refused_unexecuted(tmp_path: Path) -> None:
    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: not a readable medseg checkpoint"):
        load_checkpoint(path)
    assert not marker.exists(), "the checkpoint's payload was executed"


def test_refused_checkpoint_message_is_one_line_without_unsafe_advice(tmp_path: Path) -> None:
    path, _ = _evil_checkpoint(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and "weights_only=False" not in message, message


def test_cli_predict_refuses_malicious_checkpoint(tmp_path: Path) -> None:
    path, marker = _evil_checkpoint(tmp_path)
    image = tmp_path / "img.nii.gz"
    image.write_bytes(b"")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "predict", str(path), "-i", str(image), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "evil.pt" in proc.stderr
    assert not marker.exists()
    assert_empty(out)


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:builtins.open ['{marker}', 'w']",
        "!!python/object/new:builtins.open ['{marker}', 'w']",
        "!!python/name:builtins.exec",
        "!!python/module:os",
    ],
)
def test_yaml_python_tags_are_refused(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "p.yaml"
    path.write_text(f"name: x\ndescription: {tag.format(marker=marker)}\n")
    expect_error(lambda: Pipeline.from_yaml(path), ConfigError, "invalid yaml", name=path)
    assert not marker.exists()


# ---- paths built from names ------------------------------------------------------------------

ESCAPES = ["../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "..", ".", "", "a\\..\\b", "~/x", "x/y"]


@pytest.mark.parametrize("bad", ESCAPES)
def test_case_ids_that_escape_are_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(OutputError):
        check_case_id(bad)
    with pytest.raises(OutputError):
        export_base.check_case_id(bad)
    if bad in ("../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "..", ""):
        with pytest.raises(OutputError):
            output_path(tmp_path, bad)


@given(name=st.text(min_size=0, max_size=40))
def test_sanitized_case_ids_stay_inside(tmp_path: Path, name: str) -> None:
    try:
        cid = sanitize_case_id(name)
    except InputError:
        return
    check_case_id(cid)
    target = (tmp_path / f"{cid}.nii.gz").resolve()
    assert target.parent == tmp_path.resolve()
    assert output_path(tmp_path, f"{cid}.nii.gz") == target


@given(name=st.text(alphabet=st.sampled_from("./\\~:abc_-0\x00 "), max_size=20))
def test_export_case_ids_stay_inside(tmp_path: Path, name: str) -> None:
    try:
        cid = export_base.check_case_id(name)
    except OutputError:
        return
    assert (tmp_path / f"{cid}.nii.gz").resolve().parent == tmp_path.resolve()


# ---- DICOM text values and patient names -----------------------------------------------------


def _mark_series(folder: Path) -> None:
    """Put a marker patient name/ID and a path-like description into every file of ``folder``."""
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PatientName = MARKER_NAME
        ds.PatientID = MARKER_ID
        ds.SeriesDescription = "../../escaped"
        ds.save_as(f, enforce_file_format=True)


def _no_marker(text: str, where: str, *, patient_id: bool = True) -> None:
    """No patient name (and, unless ``patient_id=False``, no PatientID) in ``text``."""
    markers = (MARKER_NAME, MARKER_NAME.replace("^", " "), "Markerpatient") + ((MARKER_ID,) if patient_id else ())
    for marker in markers:
        assert marker not in text, f"patient identifier {marker!r} appears in {where}"


def test_dicom_text_values_do_not_build_paths(dicom_series, tmp_path: Path) -> None:
    root = tmp_path / "cases"
    root.mkdir()
    folder = dicom_series("patient_a")
    _mark_series(folder)
    folder.rename(root / "patient_a")
    assert [c.case_id for c in discover_cases(root, case_ids="folder")] == ["patient_a"]
    assert [c.case_id for c in discover_cases(root)] == [MARKER_ID]  # cases are named by PatientID by default
    for f in (root / "patient_a").glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PatientID = "../../escaped"
        ds.save_as(f, enforce_file_format=True)
    assert [c.case_id for c in discover_cases(root)] == ["escaped"]  # sanitised: never a path
    assert not (tmp_path.parent / "escaped").exists()


def test_info_json_does_not_print_patient_names(dicom_series) -> None:
    folder = dicom_series("marked")
    _mark_series(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "-v", "info", "--json", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert records[0]["description"] == "../../escaped"
    assert records[0]["patient_id"] == MARKER_ID  # info shows which patient a series is, never the name
    _no_marker(proc.stdout + proc.stderr, "medseg info output", patient_id=False)


PIPELINE = """\
name: tiny-ct
input: {{modality: CT, channels: [CT], labels: {{1: liver}}}}
preprocess:
  - resample: {{spacing: [3.0, 3.0, 3.0]}}
network: {{name: unet, options: {{n_stages: 2, base_channels: 2, max_channels: 4}}}}
inference: {{patch_size: [16, 16, 16], checkpoints: [{ckpt}], precision: float32}}
export:
  - nifti: {{}}
  - stats: {{}}
"""


def tiny_pipeline(folder: Path) -> Path:
    """A pipeline file with an untrained tiny U-Net checkpoint beside it."""
    opts = {"n_stages": 2, "base_channels": 2, "max_channels": 4}
    net = build_network("unet", in_channels=1, out_channels=2, **opts)
    save_checkpoint(
        folder / "tiny.pt",
        net,
        network_name="unet",
        network_options={"in_channels": 1, "out_channels": 2, **opts},
        labels={0: "background", 1: "liver"},
        channels=["CT"],
    )
    path = folder / "tiny.yaml"
    path.write_text(PIPELINE.format(ckpt="tiny.pt"))
    return path


@pytest.mark.slow
def test_predict_on_dicom_does_not_leak_patient_names(dicom_series, tmp_path: Path) -> None:
    folder = dicom_series("marked")
    _mark_series(folder)
    pipeline = tiny_pipeline(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medseg.cli",
            "-v",
            "predict",
            str(pipeline),
            "-i",
            str(folder),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--json",
            "--verbose",
            "--case-ids",
            "folder",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".nii.gz") for p in files), files
    assert all(p.resolve().is_relative_to(out.resolve()) for p in files)
    _no_marker(proc.stdout + proc.stderr, "predict stdout/stderr")
    for p in files:
        _no_marker(p.read_bytes().decode("latin-1"), str(p.relative_to(out)))
