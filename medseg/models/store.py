"""Installed models: ``$MEDSEG_HOME/models/NAME/`` (default ``~/.medseg``), and unpacked zips to predict from.

``install_model`` verifies a package and unpacks it under its name; ``medseg predict NAME`` then
finds ``models/NAME/pipeline.yaml`` (checked against the manifest again before use). Predicting
straight from a zip unpacks it once into ``$MEDSEG_HOME/cache/SHA256/`` (the zip's hash), so
batch workers and re-runs share one verified copy.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from medseg.batch.fingerprint import hash_file
from medseg.errors import ConfigError, InputError
from medseg.models.package import extract_package, model_name, read_manifest, verify_folder

HOME_VARIABLE = "MEDSEG_HOME"


def medseg_home() -> Path:
    """``$MEDSEG_HOME``, else ``~/.medseg``."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".medseg").expanduser()


def models_dir() -> Path:
    """Where installed models live: ``$MEDSEG_HOME/models``."""
    return medseg_home() / "models"


def install_model(package: str | os.PathLike[str], *, name: str | None = None, force: bool = False) -> Path:
    """Verify ``package`` and unpack it into ``models/NAME`` (NAME: ``name`` or the package's own).

    Raises:
        InputError: the package is refused (see :func:`medseg.models.package.extract_package`).
        ConfigError: a model of that name is installed and ``force`` is False.
    """
    p = Path(package)
    if not p.is_file():
        raise InputError(f"{p}: no such model package")
    manifest = read_manifest(p)
    model = model_name(name or str(manifest.get("name") or p.stem))
    target = models_dir() / model
    if target.exists() and not force:
        raise ConfigError(f"model '{model}' is already installed in {target}; add --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{model}.new")
    shutil.rmtree(staged, ignore_errors=True)
    extract_package(p, staged)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staged, target)
    return target


def installed_models() -> list[dict[str, Any]]:
    """``[{"name", "path", "labels", "folds", "description"}]`` of every installed model, by name."""
    out = []
    root = models_dir()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not (folder / "medseg-model.json").is_file():
            continue
        manifest = read_manifest_folder(folder)
        out.append(
            {
                "name": folder.name,
                "path": folder,
                "labels": manifest.get("labels", {}),
                "folds": manifest.get("folds", []),
                "description": manifest.get("description", ""),
            }
        )
    return out


def read_manifest_folder(folder: Path) -> dict[str, Any]:
    import json

    try:
        data: dict[str, Any] = json.loads((folder / "medseg-model.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: unreadable medseg-model.json ({exc})") from exc
    return data


def installed_model(name: str) -> Path | None:
    """The folder of the installed model ``name`` (verified against its manifest), or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = models_dir() / name
    if not (folder / "medseg-model.json").is_file():
        return None
    verify_folder(folder)
    return folder


def unpacked(package: str | os.PathLike[str]) -> Path:
    """A verified unpacked copy of ``package`` to predict from: ``$MEDSEG_HOME/cache/SHA256`` (made once)."""
    p = Path(package)
    if not p.is_file():
        raise InputError(f"{p}: no such model package")
    folder = medseg_home() / "cache" / hash_file(p)[:32]
    if folder.is_dir():
        verify_folder(folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        extract_package(p, folder)  # unpacked beside the folder, then renamed into place in one step
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not folder.is_dir():
            raise
        verify_folder(folder)  # another process unpacked the same package first: use its copy
    return folder


def package_pipeline(folder: Path, onnx: bool = False) -> Path:
    """The pipeline file of an unpacked model (``pipeline_onnx.yaml`` with ``onnx``)."""
    path = folder / ("pipeline_onnx.yaml" if onnx else "pipeline.yaml")
    if not path.is_file():
        what = "was exported without --onnx" if onnx else "has no pipeline.yaml"
        raise ConfigError(f"{folder}: the model {what}")
    return path
