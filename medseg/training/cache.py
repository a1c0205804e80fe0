"""Pre-processed cases cached on disk, keyed by a hash of the inputs and the preprocessing.

A case is read (channels concatenated along C), pre-processed, its label put on the
pre-processed image grid (nearest neighbour), and stored as ``image.npy`` / ``label.npy``
plus foreground locations. A second run with the same inputs and preprocessing finds
the files and starts at once; training reads them memory-mapped (``np.load(mmap_mode=...)``).

``meta.json`` (written last) records each file's size and SHA-256; an entry is verified when a run
starts and rebuilt, with a warning naming the case, when a file is missing, truncated or changed, or
``meta.json`` itself cannot be read, so damaged bytes never reach training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.batch.fingerprint import hash_file
from medseg.core.labels import label_values
from medseg.core.volume import Volume
from medseg.errors import GeometryError, InputError, InputWarning
from medseg.io import SPACING_TOLERANCE, atomic_path, read_channels, read_label, write_text_atomic
from medseg.training.dataset import Dataset, TrainingCase
from medseg.transforms.functional.resample import resample_to_grid

log = logging.getLogger(__name__)

Preprocess = Callable[[Volume], Volume]
#: 2: ``meta.json`` records the size and SHA-256 of every file of the entry; 3: and the case's QC summary.
CACHE_VERSION = 3
#: at most this many foreground voxel locations are kept per class (nnU-Net keeps 10,000).
MAX_LOCATIONS = 10_000


@dataclass(frozen=True)
class CachedCase:
    """A pre-processed case on disk.

    Attributes:
        case_id: the case's id.
        folder: holds ``image.npy`` (float32 ``(C, X, Y, Z)``), ``label.npy`` (``(1, X, Y, Z)``
            integer, absent without label), ``locations.npz`` (foreground voxels per class) and
            ``meta.json``.
        affine: 4×4 voxel→RAS mm of the pre-processed grid.
        shape: ``(X, Y, Z)`` of the pre-processed grid.
        class_label: case-level class or None.
        has_label: the case has a label map.
        summary: the case's quality-control entry (:func:`medseg.qc.summary.case_summary`: input
            geometry, foreground intensities after pre-processing, label volumes/components on the
            pre-processed grid); None without a label.
    """

    case_id: str
    folder: Path
    affine: np.ndarray
    shape: tuple[int, int, int]
    class_label: int | None = None
    has_label: bool = True
    summary: dict[str, Any] | None = field(default=None, compare=False)

    def image(self, mmap: bool = True) -> np.ndarray:
        """``(C, X, Y, Z)`` float32, memory-mapped (copy-on-write) by default."""
        return np.load(self.folder / "image.npy", mmap_mode="c" if mmap else None)

    def label(self, mmap: bool = True) -> np.ndarray:
        """``(1, X, Y, Z)`` integer label map."""
        return np.load(self.folder / "label.npy", mmap_mode="c" if mmap else None)

    def locations(self) -> dict[int, torch.Tensor]:
        """Foreground voxel indices ``(K, 3)`` per class (a subsample of at most 10,000)."""
        with np.load(self.folder / "locations.npz") as z:
            return {int(k[1:]): torch.from_numpy(z[k]) for k in z.files}


@dataclass
class CacheStats:
    """How many cases came from the cache and how many were pre-processed."""

    hits: int = 0
    misses: int = 0
    ids_processed: list[str] = field(default_factory=list)


def callable_key(fn: Any) -> str:
    """A stable text key for a preprocessing callable (dataclass steps: their repr)."""
    if fn is None:
        return "identity"
    if hasattr(fn, "__dataclass_fields__") or isinstance(fn, (list, tuple)):
        return repr(fn)
    steps = getattr(fn, "steps", None)
    if steps is not None:
        return f"{type(fn).__qualname__}({steps!r})"
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def case_key(case: TrainingCase, preprocess_key: str, spacing_tolerance: float = SPACING_TOLERANCE) -> str:
    """Hash of the case's input files (path, size, mtime), the preprocessing key, the series read,
    the ROI→label mapping and the reader options (the slice-gap tolerance)."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{preprocess_key}|{case.class_label}|{float(spacing_tolerance)!r}".encode())
    if case.series_uid or case.label_names:  # which series, and which ROIs become which labels
        h.update(f"|{case.series_uid}|{sorted((case.label_names or {}).items())}".encode())
    paths = [*case.images, *([case.label] if case.label else [])]
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def read_case(case: TrainingCase, spacing_tolerance: float = SPACING_TOLERANCE) -> tuple[Volume, Volume | None]:
    """Read the channels (concatenated along C, float32) and the label of ``case``.

    The grid checks are :func:`medseg.io.read_channels`'s, the same that prediction applies.

    Raises:
        GeometryError: channels, or image and label, are on different grids (names the case and what differs).
    """
    try:
        image = read_channels(case.images, series_uid=case.series_uid, spacing_tolerance=spacing_tolerance)
    except GeometryError as exc:
        raise GeometryError(f"case '{case.case_id}': {exc}") from exc
    image = image.replace(array=np.asarray(image.numpy(), dtype=np.float32))
    label = None
    if case.label is not None:
        label = read_label(case.label, reference=image, labels=case.label_names)  # SEG/RTSTRUCT: on the image grid
        try:
            image.require_grid(label, "label", fix="the label must be drawn on the image's grid")
        except GeometryError as exc:
            raise GeometryError(f"case '{case.case_id}': {exc}") from exc
    return image, label


def label_on_grid(label: Volume, image: Volume) -> np.ndarray:
    """``label`` put on ``image``'s grid (nearest neighbour; outside → 0), ``(1, X, Y, Z)``."""
    if image.grid.matches(label.grid):
        return np.asarray(label.numpy())
    t = torch.as_tensor(np.asarray(label.numpy()).astype(np.int32))
    out = resample_to_grid(t, label.affine, image.spatial_shape, image.affine, "nearest", fill=0.0)
    return out.cpu().numpy()


def foreground_locations(label: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Voxel indices ``(K, 3)`` int32 of each foreground class of ``label`` ``(1, X, Y, Z)`` (at most
    :data:`MAX_LOCATIONS` per class, subsampled with ``rng``), keyed ``c<value>`` (``locations.npz``)."""
    out = {}
    lab = label[0]
    for c in np.unique(lab):
        if c <= 0:
            continue
        idx = np.argwhere(lab == c).astype(np.int32)
        if len(idx) > MAX_LOCATIONS:
            idx = idx[np.sort(rng.choice(len(idx), MAX_LOCATIONS, replace=False))]
        out[f"c{int(c)}"] = idx
    return out


def check_label_values(case: TrainingCase, label: Volume, allowed: Collection[int] | None) -> None:
    """Refuse non-integer, negative or undeclared label values (names the file and the values)."""
    values = label_values(label.numpy(), f"case '{case.case_id}': label {case.label}", fix="remap the label file")
    if allowed is not None:
        unknown = sorted(set(np.unique(values).tolist()) - set(allowed))
        if unknown:
            raise InputError(
                f"case '{case.case_id}': label {case.label} holds values {unknown} that are not among the declared "
                f"labels {sorted(allowed)}; add them to dataset.json (or the pipeline's input.labels) or remap "
                "the label file"
            )


def prepare_case(
    case: TrainingCase,
    preprocess: Preprocess | None,
    folder: Path,
    allowed: Collection[int] | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
) -> CachedCase:
    """Read, check, pre-process and store one case in ``folder`` (files written atomically).

    Args:
        allowed: the declared label values (with 0); other values raise before anything is written.
    """
    image, label = read_case(case, spacing_tolerance)
    if label is not None:
        check_label_values(case, label, allowed)
    raw = image
    if preprocess is not None:
        image = preprocess(image)
    img = np.ascontiguousarray(image.numpy(), dtype=np.float32)
    if not np.isfinite(img).all():
        raise InputError(f"case '{case.case_id}': the pre-processed image has NaN/inf voxels ({case.images[0]})")
    lab = None
    if label is not None:
        lab = label_on_grid(label, image)
        lab = np.ascontiguousarray(lab, dtype=np.uint8 if lab.max() < 256 else np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "image.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, img)
    if lab is not None:
        with atomic_path(folder / "label.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, lab)
        locs = foreground_locations(lab, np.random.default_rng(0))
        with atomic_path(folder / "locations.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **locs)  # type: ignore[arg-type]
    meta = {
        "case_id": case.case_id,
        "affine": np.asarray(image.affine).tolist(),
        "shape": list(image.spatial_shape),
        "class_label": case.class_label,
        "has_label": label is not None,
        "images": [str(p) for p in case.images],
        "label": str(case.label) if case.label else None,
        "summary": _qc_summary(raw, img, lab, image.voxel_volume_mm3),
        "files": {
            f.name: {"size": f.stat().st_size, "sha256": hash_file(f)}
            for f in (folder / n for n in ENTRY_FILES)
            if f.name == "image.npy" or lab is not None
        },
    }
    write_text_atomic(folder / "meta.json", json.dumps(meta, indent=1))  # written last: marks completion
    return _from_meta(folder, meta)


def _qc_summary(raw: Volume, img: np.ndarray, lab: np.ndarray | None, voxel_mm3: float) -> dict[str, Any] | None:
    """The case's QC entry (None without a label, or for a case-level class label)."""
    from medseg.qc.summary import case_summary

    if lab is None or img.ndim != 4:
        return None
    return case_summary(raw, img, lab, voxel_mm3)


#: The data files of a cache entry (``label.npy`` and ``locations.npz`` only for cases with a label).
ENTRY_FILES = ("image.npy", "label.npy", "locations.npz")


def verified_entry(folder: Path) -> tuple[CachedCase | None, str]:
    """The cache entry in ``folder`` if ``meta.json`` is readable and every file it lists has its recorded
    size and SHA-256; else ``(None, what is wrong)``."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        files = meta["files"]
        case = _from_meta(folder, meta)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: invalid UTF-8/JSON
        return None, f"meta.json unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    needed = ["image.npy", *(["label.npy", "locations.npz"] if case.has_label else [])]
    for name in needed:
        path, recorded = folder / name, files.get(name) if isinstance(files, dict) else None
        if not isinstance(recorded, dict):
            return None, f"meta.json lists no checksum for {name}"
        if not path.is_file():
            return None, f"{name} is missing"
        size = path.stat().st_size
        if size != recorded.get("size"):
            return None, f"{name} has {size} bytes, {recorded.get('size')} were written (truncated or changed)"
        if hash_file(path) != recorded.get("sha256"):
            return None, f"{name} does not match its SHA-256 (damaged)"
    return case, ""


def _from_meta(folder: Path, meta: dict[str, Any]) -> CachedCase:
    return CachedCase(
        meta["case_id"],
        folder,
        np.asarray(meta["affine"], dtype=np.float64),
        tuple(meta["shape"]),  # type: ignore[arg-type]
        meta["class_label"],
        bool(meta["has_label"]),
        meta.get("summary"),
    )


def prepare_dataset(
    dataset: Dataset | Sequence[TrainingCase],
    preprocess: Preprocess | None,
    cache_dir: str | Path,
    *,
    preprocess_key: str | None = None,
    stats: CacheStats | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
    verify: bool = True,
) -> list[CachedCase]:
    """Pre-process every case into ``cache_dir`` unless a matching cache entry exists.

    Grid mismatches are collected over all cases and reported together.

    Args:
        dataset: the cases.
        preprocess: callable on the image :class:`Volume` (None: identity).
        cache_dir: cache folder (created).
        preprocess_key: text identifying the preprocessing (default: from ``preprocess``);
            changing it invalidates the cache.
        stats: filled with cache hits and misses.
        spacing_tolerance: DICOM slice-gap tolerance (see :func:`medseg.io.read`).
        verify: check every reused entry against the sizes and SHA-256 in its ``meta.json`` and rebuild
            (with an :class:`~medseg.errors.InputWarning` naming the case) those that fail; False reads the
            entries as they are (DDP ranks after rank 0 has verified them).

    Raises:
        GeometryError: some cases have image/label or channel grids that disagree (all listed).
    """
    cases = dataset.cases if isinstance(dataset, Dataset) else list(dataset)
    key = preprocess_key if preprocess_key is not None else callable_key(preprocess)
    stats = stats if stats is not None else CacheStats()
    root = Path(cache_dir)
    allowed = set(dataset.labels) if isinstance(dataset, Dataset) and dataset.labels else None
    out: list[CachedCase] = []
    errors: list[str] = []
    for case in cases:
        folder = root / f"{case.case_id}-{case_key(case, key, spacing_tolerance)}"
        meta_file = folder / "meta.json"
        if meta_file.exists():
            cached, problem = (
                verified_entry(folder) if verify else (_from_meta(folder, json.loads(meta_file.read_text())), "")
            )
            if cached is not None:
                out.append(cached)
                stats.hits += 1
                continue
            warnings.warn(
                f"case '{case.case_id}': training cache entry {folder} is damaged ({problem}); it is pre-processed again",
                InputWarning,
                stacklevel=2,
            )
        try:
            out.append(prepare_case(case, preprocess, folder, allowed, spacing_tolerance))
        except GeometryError as exc:
            errors.append(str(exc))
            continue
        stats.misses += 1
        stats.ids_processed.append(case.case_id)
    if errors:
        raise GeometryError(f"{len(errors)} of {len(cases)} cases have mismatched grids:\n  " + "\n  ".join(errors))
    log.info("cache %s: %d cases reused, %d pre-processed", root, stats.hits, stats.misses)
    return out
