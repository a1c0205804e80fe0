"""Model packages: export → install → predict equals predicting from the run folder; unsafe zips are refused."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli.main import main
from medseg.core import Volume, make_affine
from medseg.errors import ConfigError, InputError
from medseg.models import export_model, install_model, installed_model
from medseg.models.package import MANIFEST, extract_package
from medseg.networks import build_network
from medseg.pipeline import Pipeline
from medseg.training.checkpoint import save_checkpoint

PIPELINE = {
    "name": "Tiny Phantom",
    "description": "two labels on a phantom",
    "input": {"modality": "CT", "channels": ["CT"], "labels": {1: "a", 2: "b"}},
    "preprocess": [{"resample": {"spacing": [2.0, 2.0, 2.0]}}, {"zscore": {}}],
    "network": {"name": "unet", "options": {"n_stages": 2, "base_channels": 4}},
    "training": {"patch_size": [16, 16, 16]},
    "inference": {"patch_size": [16, 16, 16], "precision": "float32", "device": "cpu"},
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A training run folder as 'medseg train' writes it: two folds with best.pt, metrics.json and splits.json."""
    pipeline = Pipeline.from_dict(PIPELINE)
    run = tmp_path / "run"
    for fold in (0, 1):
        torch.manual_seed(fold)
        options = {"n_stages": 2, "base_channels": 4, "in_channels": 1, "out_channels": 3, "spatial_dims": 3}
        net = build_network("unet", **options)
        save_checkpoint(
            run / f"fold_{fold}" / "best.pt", net, network_name="unet", network_options=options,
            config=pipeline.to_dict(), labels=pipeline.labels_with_background, channels=["CT"], epoch=3,
            training_state={"optimizer": {"step": torch.tensor(3.0)}},
        )  # fmt: skip
        (run / f"fold_{fold}" / "metrics.json").write_text(json.dumps({"dice_a": 0.8 + fold / 10, "dice_b": 0.7}))
    (run / "splits.json").write_text("[]")
    return run


def _image(tmp_path: Path) -> Path:
    import medseg

    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (1, 24, 20, 18)).astype(np.float32)
    return medseg.write(Volume(a, make_affine((1.5, 1.7, 2.2), (3.0, 1.0, -2.0))), tmp_path / "case.nii.gz")


def _predict(target: str, image: Path, out: Path, *extra: str) -> np.ndarray:
    import medseg

    code = main(["predict", target, "-i", str(image), "-o", str(out), "--quiet", "--export", "nifti", *extra])
    assert code == 0
    return medseg.read(out / "case.nii.gz").numpy()


def test_export_install_predict_equals_the_run_folder(run_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    image = _image(tmp_path)
    package = export_model(run_dir, tmp_path / "model.zip")
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        card = z.read("MODEL_CARD.md").decode()
        packaged = torch.load(io.BytesIO(z.read("weights/fold_0.pt")), weights_only=True)
    assert {MANIFEST, "pipeline.yaml", "weights/fold_0.pt", "weights/fold_1.pt", "metrics/fold_0.json",
            "provenance.json", "MODEL_CARD.md", "splits.json"} <= names  # fmt: skip
    assert packaged["training_state"] == {}  # no optimiser state in a package
    assert "| dice_a | 0.800 | 0.900 | 0.850 |" in card
    folds = [str(run_dir / "fold_0" / "best.pt"), str(run_dir / "fold_1" / "best.pt")]
    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text(Pipeline.from_dict(PIPELINE).to_yaml())
    reference = _predict(str(pipeline_file), image, tmp_path / "ref", "-c", folds[0], "-c", folds[1])
    assert len(np.unique(reference)) >= 2  # the comparison means something
    from_zip = _predict(str(package), image, tmp_path / "zip")
    assert main(["model", "install", str(package)]) == 0
    folder = installed_model("tiny-phantom")
    assert folder is not None and folder.parent == tmp_path / "home" / "models"
    installed = _predict("tiny-phantom", image, tmp_path / "installed")
    assert np.array_equal(from_zip, reference) and np.array_equal(installed, reference)
    # an installed file edited afterwards is noticed before any case runs
    (folder / "weights" / "fold_1.pt").write_bytes(b"edited")
    with pytest.raises(InputError, match="changed since the model was installed"):
        installed_model("tiny-phantom")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs medseg[onnx]")
def test_onnx_export_equals_torch(run_dir, tmp_path, monkeypatch) -> None:
    import onnxruntime as ort

    from medseg.training import load_checkpoint

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    package = export_model(run_dir, tmp_path / "model.zip", onnx=True)
    folder = tmp_path / "unpacked"
    extract_package(package, folder)
    net = load_checkpoint(folder / "weights" / "fold_1.pt").build_network("cpu")
    x = torch.randn(2, 1, 32, 16, 24)
    session = ort.InferenceSession(str(folder / "onnx" / "fold_1.onnx"), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        assert np.abs(ours - net(x).numpy()).max() <= 1e-4
    image = _image(tmp_path)
    torch_labels = _predict(str(folder / "pipeline.yaml"), image, tmp_path / "torch")
    onnx_labels = _predict(str(folder / "pipeline_onnx.yaml"), image, tmp_path / "onnx")
    assert (torch_labels == onnx_labels).mean() > 0.999


def _rezip(package: Path, out: Path, edit) -> Path:
    """Copy ``package`` to ``out`` with ``edit(manifest, members)`` applied (members: name → bytes)."""
    with zipfile.ZipFile(package) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members.pop(MANIFEST))
    edit(manifest, members)
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(MANIFEST, json.dumps(manifest))
        for name, data in members.items():
            z.writestr(name, data)
    return out


def _listed(manifest: dict, name: str, data: bytes) -> None:
    import hashlib

    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


class Evil:
    """Any Python object: torch.save pickles it, weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unsafe_packages_are_refused(run_dir, tmp_path) -> None:
    package = export_model(run_dir, tmp_path / "model.zip")
    dest = tmp_path / "out"

    def adding(name: str, data: bytes):
        """A package edit that adds ``name`` and lists it in the manifest with its real hash."""

        def edit(m, members):
            members[name] = data
            _listed(m, name, data)

        return edit

    with pytest.raises(InputError, match=r"member '\.\./escape\.txt' would be written outside the model folder"):
        extract_package(_rezip(package, tmp_path / "a.zip", adding("../escape.txt", b"x")), dest)

    with pytest.raises(InputError, match="would be written outside the model folder"):
        extract_package(_rezip(package, tmp_path / "b.zip", adding("/etc/x.txt", b"x")), dest)

    def tamper(m, members):
        data = bytearray(members["weights/fold_0.pt"])
        data[len(data) // 2] ^= 0xFF
        members["weights/fold_0.pt"] = bytes(data)

    with pytest.raises(InputError, match=r"'weights/fold_0.pt' does not match its SHA-256 .*tampered or corrupt"):
        extract_package(_rezip(package, tmp_path / "c.zip", tamper), dest)

    with pytest.raises(InputError, match="'extra.pkl' is a pickle-type file"):
        extract_package(_rezip(package, tmp_path / "d.zip", adding("extra.pkl", b"\x80\x04N.")), dest)

    buffer = io.BytesIO()
    torch.save({"format": "medseg-checkpoint", "state_dict": Evil()}, buffer)

    def pickled_weights(m, members):
        members["weights/fold_0.pt"] = buffer.getvalue()
        _listed(m, "weights/fold_0.pt", buffer.getvalue())

    with pytest.raises(InputError, match=r"weights 'weights/fold_0.pt' refused: .*refused for safety"):
        extract_package(_rezip(package, tmp_path / "e.zip", pickled_weights), dest)

    def unlisted(m, members):
        members["notes.txt"] = b"x"

    with pytest.raises(InputError, match="'notes.txt' is not listed"):
        extract_package(_rezip(package, tmp_path / "f.zip", unlisted), dest)

    link = tmp_path / "g.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(link, "w") as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
        info = zipfile.ZipInfo("weights/link.pt")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="'weights/link.pt' is a symbolic link"):
        extract_package(link, dest)
    assert not dest.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())  # nothing left


def test_install_refuses_to_overwrite_and_names_resolve(run_dir, tmp_path, monkeypatch) -> None:
    from medseg.models.targets import resolve_target

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    package = export_model(run_dir, tmp_path / "model.zip", name="liver")
    install_model(package)
    with pytest.raises(ConfigError, match="already installed.*--force"):
        install_model(package)
    assert install_model(package, force=True).name == "liver"
    assert resolve_target("liver") == tmp_path / "home" / "models" / "liver" / "pipeline.yaml"
    assert resolve_target("ct_organs").name == "ct_organs.yaml"
    with pytest.raises(
        ConfigError,
        match=r"no such pipeline file, model package, installed model or shipped pipeline \(did you mean 'liver'\?\)",
    ):
        resolve_target("livr")
    with pytest.raises(InputError, match="no trained fold found"):
        export_model(tmp_path / "home", tmp_path / "x.zip")


def test_the_card_says_what_ran(run_dir, tmp_path) -> None:
    """A run stopped by its time limit after 1 of 20 epochs, never validated, is described as such."""
    record = {"best_epoch": -1, "epochs": 1, "epochs_planned": 20, "iterations": 166, "iterations_per_epoch": 166,
              "validations": 0, "training_s": 300.4, "max_time_s": 300, "stopped_by": "time limit"}  # fmt: skip
    for fold in (0, 1):
        (run_dir / f"fold_{fold}" / "metrics.json").write_text(json.dumps(record))
    with zipfile.ZipFile(export_model(run_dir, tmp_path / "model.zip")) as z:
        card = z.read("MODEL_CARD.md").decode()
    assert "- no validated fold(s)" in card and "No validation metrics (no fold was validated)" in card
    line = "fold_0: 1 of 20 epochs, 166 iterations in 300 s, no validation, stopped by the time limit"
    assert f"- {line}" in card
