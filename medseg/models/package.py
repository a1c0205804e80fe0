"""Model packages: one zip with a trained model's pipeline, every fold's weights and what describes them.

``export_model(RUN_DIR, "model.zip")`` packs a training run folder (``fold_K/`` or ``all/``
sub-folders with ``best.pt``) into::

    medseg-model.json     manifest: format, name, labels, channels, folds, metrics, sha256 of every file
    pipeline.yaml         the pipeline, inference.checkpoints pointing at weights/
    weights/fold_K.pt     medseg checkpoints (loaded with torch.load(weights_only=True))
    metrics/fold_K.json   the fold's validation metrics (when it has them)
    provenance.json       where each file came from, versions, time
    MODEL_CARD.md         a short human-readable description
    plan.json, fingerprint.json, splits.json   copied from the run folder when present
    onnx/fold_K.onnx, pipeline_onnx.yaml        with onnx=True (see :mod:`medseg.models.onnx_export`)

:func:`extract_package` is the only way a package is opened: member names must be plain
relative paths (no ``..``, no absolute paths, no links), every member must be listed in the
manifest with its SHA-256 and every listed file must be there with that hash; only known file
kinds are accepted (no pickles: ``.pt`` files must load with ``weights_only=True`` or be
TorchScript archives). The checksums catch corruption and edits after packing; they do not
authenticate who packed it — compare the zip's SHA-256 with the one its author published.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from medseg.batch.fingerprint import hash_file
from medseg.core import limits
from medseg.core.limits import format_bytes
from medseg.errors import CheckpointError, ConfigError, InputError

MANIFEST = "medseg-model.json"
FORMAT = "medseg-model"
FORMAT_VERSION = 1
#: File kinds a package may hold; anything else (pickles above all) is refused.
ALLOWED_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".txt", ".csv", ".png", ".pt", ".onnx")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".npy", ".npz", ".joblib", ".pth.tar", ".ckpt", ".bin")
#: Largest total uncompressed size a package may unpack to, in bytes (MEDSEG_MAX_PACKAGE_BYTES; see
#: :mod:`medseg.core.limits`, which also bounds each member's compression ratio).
MAX_PACKAGE_BYTES = limits.MAX_PACKAGE_BYTES
COPIED = ("plan.json", "fingerprint.json", "splits.json")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class RunFold:
    """One fold of a training run: its name (``fold_0``, ``all``), checkpoint and metrics file."""

    name: str
    checkpoint: Path
    metrics: Path | None


def model_name(text: str) -> str:
    """``text`` as a model name (lower case, ``[a-z0-9_.-]``, ≤ 64 characters).

    Raises:
        ConfigError: nothing usable remains.
    """
    name = re.sub(r"[^a-z0-9_.-]+", "-", text.strip().lower()).strip("-.")
    if not _NAME.match(name):
        raise ConfigError(f"{text!r}: not a usable model name; use letters, digits, '-', '_' or '.' (e.g. liver-ct)")
    return name


# ---- export --------------------------------------------------------------------------------------


def run_folds(run_dir: Path) -> list[RunFold]:
    """The folds of a training run folder: ``fold_K/`` and ``all/`` sub-folders, or the folder itself.

    Each fold's weights are ``best.pt`` (else ``last.pt``).

    Raises:
        InputError: no checkpoint anywhere (the message says what was looked for).
    """
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder; give the folder 'medseg train -o' wrote")

    def fold(folder: Path, name: str) -> RunFold | None:
        for candidate in ("best.pt", "last.pt"):
            if (folder / candidate).is_file():
                metrics = folder / "metrics.json"
                return RunFold(name, folder / candidate, metrics if metrics.is_file() else None)
        return None

    subs = sorted(
        (p for p in run_dir.iterdir() if p.is_dir() and re.fullmatch(r"fold_\d+|all", p.name)),
        key=lambda p: (p.name == "all", int(p.name[5:]) if p.name.startswith("fold_") else 0),
    )
    folds = [f for p in subs if (f := fold(p, p.name)) is not None]
    if not folds and (own := fold(run_dir, run_dir.name)) is not None:
        folds = [own]
    if not folds:
        raise InputError(
            f"{run_dir}: no trained fold found (looked for fold_K/best.pt, all/best.pt, best.pt or last.pt); "
            "train with 'medseg train PIPELINE --data DATA -o RUN_DIR' first"
        )
    if any(f.name.startswith("fold_") for f in folds):
        folds = [f for f in folds if f.name != "all"]  # a cross-validation ensemble; 'all' is another model
    return folds


def _package_pipeline(run_dir: Path, folds: list[RunFold], pipeline_file: Path | None) -> tuple[Any, dict[str, Any]]:
    """The pipeline of the run (``pipeline_file``, ``final_pipeline.yaml`` or the checkpoints' config) and the
    checkpoints' common description; every fold must share network, labels and channels."""
    from medseg.pipeline import Pipeline
    from medseg.training import load_checkpoint

    first = None
    for f in folds:
        ckpt = load_checkpoint(f.checkpoint)
        key = (ckpt.network_name, ckpt.network_options, ckpt.labels, ckpt.channels)
        if first is None:
            first = (key, ckpt)
        elif key != first[0]:
            raise CheckpointError(
                f"{f.checkpoint}: fold {f.name} was trained with another network, labels or channels than "
                f"{folds[0].name}; export one run at a time"
            )
    assert first is not None
    ckpt = first[1]
    source = pipeline_file or (run_dir / "final_pipeline.yaml" if (run_dir / "final_pipeline.yaml").is_file() else None)
    if source is not None:
        pipeline = Pipeline.from_yaml(source)
    elif ckpt.config:
        pipeline = Pipeline.from_dict(ckpt.config, source=folds[0].checkpoint)
    else:
        raise CheckpointError(f"{folds[0].checkpoint}: carries no pipeline; give it with --pipeline FILE")
    if pipeline.labels_with_background != ckpt.labels:
        raise CheckpointError(
            f"{source or folds[0].checkpoint}: the pipeline's labels {pipeline.labels} differ from the "
            f"checkpoints' {ckpt.labels}"
        )
    return pipeline, {"network": ckpt.network_name, "options": ckpt.network_options, "versions": ckpt.versions}


def _weights_bytes(checkpoint: Path) -> bytes:
    """The checkpoint as packaged: its bytes, without the optimiser/RNG state when it has one."""
    import torch

    from medseg.training.checkpoint import checkpoint_bytes

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not data.get("training_state"):
        return checkpoint.read_bytes()
    data["training_state"] = {}
    return checkpoint_bytes(data)  # with a new checksum


def export_model(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    pipeline_file: str | os.PathLike[str] | None = None,
    onnx: bool = False,
) -> Path:
    """Pack the training run ``run_dir`` into the zip ``out`` (written atomically).

    Args:
        run_dir: the folder ``medseg train -o`` wrote (``fold_K/``, ``all/``), or one fold's folder.
        out: the ``.zip`` to write.
        name: the model's name (default: the pipeline's ``name``).
        pipeline_file: the pipeline to ship (default: ``final_pipeline.yaml`` of the run, else the
            config the checkpoints carry).
        onnx: also write each fold as ONNX (checked against torch within 1e-4) and ``pipeline_onnx.yaml``.

    Returns:
        ``out``.
    """
    import yaml

    from medseg.io import atomic_path
    from medseg.models.card import model_card
    from medseg.pipeline.weights import weight_files

    run = Path(run_dir)
    folds = run_folds(run)
    pipeline, described = _package_pipeline(run, folds, Path(pipeline_file) if pipeline_file else None)
    if weight_files(pipeline):
        raise ConfigError(
            f"{run}: the pipeline runs other network files (crop_by_model stages or a TorchScript/ONNX network); "
            "packages hold medseg checkpoints only: ship those files separately"
        )
    model = model_name(name or pipeline.spec.name)
    files: dict[str, bytes] = {}
    metrics: dict[str, Any] = {}
    for f in folds:
        files[f"weights/{f.name}.pt"] = _weights_bytes(f.checkpoint)
        if f.metrics is not None:
            files[f"metrics/{f.name}.json"] = f.metrics.read_bytes()
            metrics[f.name] = json.loads(f.metrics.read_text())
    config = pipeline.to_dict()
    config["inference"]["checkpoints"] = [f"weights/{f.name}.pt" for f in folds]
    files["pipeline.yaml"] = yaml.safe_dump(config, sort_keys=False, default_flow_style=None).encode()
    for extra in COPIED:
        if (run / extra).is_file():
            files[extra] = (run / extra).read_bytes()
    if onnx:
        from medseg.models.onnx_export import export_folds

        files.update(export_folds(config, files, [f.name for f in folds], described))
    provenance = {
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_folder": run.name,
        "trained_with": described["versions"],
        "folds": {
            f.name: {"source": f.checkpoint.relative_to(run).as_posix() if f.checkpoint.is_relative_to(run) else f.checkpoint.name,
                     "sha256": hash_file(f.checkpoint)}
            for f in folds
        },
    }  # fmt: skip
    files["provenance.json"] = json.dumps(provenance, indent=1).encode()
    files["MODEL_CARD.md"] = model_card(model, pipeline, described, metrics, sorted(files)).encode()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model,
        "description": pipeline.spec.description,
        "medseg": provenance["trained_with"].get("medseg"),
        "pipeline": "pipeline.yaml",
        "modality": pipeline.spec.input.modality,
        "channels": list(pipeline.spec.input.channels),
        "labels": {str(k): v for k, v in pipeline.labels.items()},
        "network": described["network"],
        "folds": [f.name for f in folds],
        "metrics": metrics,
        "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in sorted(files.items())},
    }
    target = Path(out)
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for member, data in sorted(files.items()):
            z.writestr(member, data)
    return target


# ---- reading -----------------------------------------------------------------------------------


def check_member_name(package: Path, name: str) -> PurePosixPath:
    """A member name as a safe relative path inside the package.

    Raises:
        InputError: absolute, with ``..``, a drive letter, backslashes, or an unknown/pickle file kind.
    """
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or re.match(r"^[A-Za-z]:", name)
        or any(part in ("..", ".", "") for part in name.split("/"))
    ):
        raise InputError(
            f"{package}: member '{name}' would be written outside the model folder; the package is refused"
        )
    lower = name.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise InputError(
            f"{package}: member '{name}' is a pickle-type file, which could run code when loaded; the package is refused"
        )
    if not lower.endswith(ALLOWED_SUFFIXES):
        raise InputError(
            f"{package}: member '{name}' is not a kind of file a model package holds "
            f"({', '.join(ALLOWED_SUFFIXES)}); the package is refused"
        )
    return path


def read_manifest(package: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a package zip (checked to be a medseg model package of a known version)."""
    p = Path(package)
    try:
        with zipfile.ZipFile(p) as z:
            _check_ratio(p, z.getinfo(MANIFEST))
            data = json.loads(z.read(MANIFEST))
    except KeyError:
        raise InputError(
            f"{p}: not a medseg model package (no {MANIFEST}); make one with 'medseg model export'"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{p}: not a readable model package ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "download it again or re-export it with 'medseg model export'"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise InputError(f"{p}: {MANIFEST} is not a medseg model manifest")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(
            f"{p}: package format {data['format_version']} is newer than this medseg reads; upgrade medseg"
        )
    return data


def extract_package(package: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify ``package`` and unpack it into the new folder ``dest`` (see the module docstring for the rules).

    Nothing is left behind when a check fails: members go to a temporary folder beside ``dest``,
    which is renamed to ``dest`` only when every file checked out.

    Returns:
        The manifest.

    Raises:
        InputError: an unsafe or unlisted member, a missing file, a checksum that does not match, or
            weights that are not plain tensors.
    """
    import uuid

    p = Path(package)
    manifest = read_manifest(p)
    listed = manifest["files"]
    final = Path(dest)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with zipfile.ZipFile(p) as z:
            infos = _checked_infos(p, z, listed)
            tmp.mkdir(parents=True)
            try:
                (tmp / MANIFEST).write_bytes(z.read(MANIFEST))
                for info in infos:
                    _extract_one(p, z, info, tmp, listed[info.filename]["sha256"])
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # bad CRC, cut-off or garbled data
                raise InputError(
                    f"{p}: the zip is damaged ({' '.join(str(exc).split())}); download the package again "
                    "or re-export it with 'medseg model export'"
                ) from exc
        for name in listed:
            if name.endswith(".pt"):
                check_weights(p, name, tmp / name)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _checked_infos(package: Path, z: zipfile.ZipFile, listed: dict[str, Any]) -> list[zipfile.ZipInfo]:
    infos, seen, total = [], set(), 0
    for info in z.infolist():
        if info.is_dir():
            check_member_name(package, info.filename.rstrip("/") + "/x.txt")  # the folder part must be safe too
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InputError(f"{package}: member '{info.filename}' is a symbolic link; the package is refused")
        if info.filename == MANIFEST:
            continue
        check_member_name(package, info.filename)
        if info.filename in seen:
            raise InputError(f"{package}: member '{info.filename}' appears twice; the package is refused")
        if info.filename not in listed:
            raise InputError(f"{package}: member '{info.filename}' is not listed in {MANIFEST}; the package is refused")
        seen.add(info.filename)
        _check_ratio(package, info)
        total += info.file_size
        infos.append(info)
    missing = sorted(set(listed) - seen)
    if missing:
        raise InputError(
            f"{package}: {MANIFEST} lists {', '.join(missing)} but the zip lacks it; the package is incomplete"
        )
    if total > MAX_PACKAGE_BYTES:
        raise InputError(
            f"{package}: unpacks to {format_bytes(total)}, more than the {format_bytes(MAX_PACKAGE_BYTES)} allowed "
            "(raise MEDSEG_MAX_PACKAGE_BYTES if the model is really that large)"
        )
    return infos


def _check_ratio(package: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member that unpacks to far more than it takes in the zip (a zip bomb), before unpacking it.

    Members up to :data:`medseg.core.limits.PACKAGE_RATIO_FLOOR` bytes are exempt: small text compresses well.
    """
    if info.file_size <= limits.PACKAGE_RATIO_FLOOR:
        return
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > limits.MAX_PACKAGE_RATIO:
        raise InputError(
            f"{package}: member '{info.filename}' unpacks to {format_bytes(info.file_size)} from "
            f"{format_bytes(info.compress_size)} ({ratio:.0f}:1, more than the {limits.MAX_PACKAGE_RATIO:g}:1 "
            "allowed; trained weights compress below 2:1); the package is refused "
            "(raise MEDSEG_MAX_PACKAGE_RATIO if you trust it)"
        )


def _extract_one(package: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path, expected: str) -> None:
    target = root.joinpath(*PurePosixPath(info.filename).parts)
    if not target.resolve().is_relative_to(root.resolve()):  # belt and braces after the name check
        raise InputError(f"{package}: member '{info.filename}' escapes the model folder; the package is refused")
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with z.open(info) as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            dst.write(chunk)
    if h.hexdigest() != expected:
        raise InputError(
            f"{package}: '{info.filename}' does not match its SHA-256 in {MANIFEST} (tampered or corrupt); "
            "the package is refused — get it again from its source"
        )


def check_weights(package: Path, name: str, path: Path) -> None:
    """A ``.pt`` member must be a medseg checkpoint readable with ``weights_only=True`` or a TorchScript archive."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any("/code/" in n for n in z.namelist()):
                return  # TorchScript: read by its own loader, which resolves no Python objects
    from medseg.training import load_checkpoint

    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise InputError(f"{package}: weights '{name}' refused: {detail}") from exc


def verify_folder(folder: Path) -> dict[str, Any]:
    """Check an unpacked model folder against its manifest again (installed files may have been edited).

    Raises:
        InputError: a file is missing or its SHA-256 differs.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder}: not an unpacked model package ({MANIFEST}: {exc})") from exc
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or hash_file(path) != entry.get("sha256"):
            raise InputError(
                f"{path}: missing or changed since the model was installed (SHA-256 differs); reinstall it with "
                "'medseg model install PACKAGE --force'"
            )
    return manifest
