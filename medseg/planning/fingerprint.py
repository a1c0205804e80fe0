"""Dataset fingerprint: what the planner needs to know about a training set, cached by content hash.

Per case (after reading the channels and the label on the image grid): shape, spacing and
orientation (shape and spacing in RAS axis order, the order the planned ``reorient`` step
gives), the shape after cropping to the nonzero region and its fraction of the volume;
per channel the foreground (label > 0) intensity statistics; per label its voxel
fraction, volume (mL), number of connected components (26-connectivity), smallest and
largest component (mm³) and the voxels hole filling would add.

Dataset level: median/percentile spacings, the nnU-Net foreground intensity statistics per
channel, label statistics, and flags (mixed orientations, labels missing from some cases,
labels declared but never present, spacing outliers).

Intensity statistics "sampled as nnU-Net does": nnU-Net's
``DatasetFingerprintExtractor.collect_foreground_intensities`` draws 10⁸/n foreground
voxels per case with replacement and pools them, so every case weighs the same whatever
its foreground size. Here each case keeps its exact moments and 1,001 quantiles (0.1 %
steps); the pooled mean and std are those of that equal-weight mixture (exactly what the
sampling estimates), and the percentiles are taken over the pooled quantiles (equal count
per case, as nnU-Net's samples). This keeps the per-case entry small enough to cache in
``fingerprint.json``, so a case whose files did not change is never read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cc3d
import numpy as np

from medseg.errors import InputError, InputWarning
from medseg.io import SPACING_TOLERANCE, write_text_atomic
from medseg.planning.consistency import check_declared_channels, check_declared_modality, open_dataset
from medseg.training.dataset import Dataset

log = logging.getLogger(__name__)

#: Bumped when the per-case analysis changes (old cache entries are then recomputed).
FINGERPRINT_VERSION = 2
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 1001)
#: A case's spacing is an outlier when an axis is more than 2× (or under half) the dataset median.
SPACING_OUTLIER_FACTOR = 2.0


class Fingerprint:
    """A dataset fingerprint (the content of ``fingerprint.json``) with typed accessors.

    Attributes:
        data: the JSON-ready dict (``cases``, ``channels``, ``labels``, ``intensity``,
            ``label_stats``, ``flags``, ...).
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def cases(self) -> list[dict[str, Any]]:
        return list(self.data["cases"])

    @property
    def n_cases(self) -> int:
        return len(self.data["cases"])

    @property
    def spacings(self) -> np.ndarray:
        """``(cases, 3)`` mm, RAS axis order."""
        return np.array([c["spacing"] for c in self.data["cases"]], dtype=np.float64)

    @property
    def shapes_after_crop(self) -> np.ndarray:
        """``(cases, 3)`` voxels after crop-to-nonzero, RAS axis order."""
        return np.array([c["shape_after_crop"] for c in self.data["cases"]], dtype=np.float64)

    @property
    def median_crop_fraction(self) -> float:
        """nnU-Net's ``median_relative_size_after_cropping``."""
        return float(self.data["median_crop_fraction"])

    @property
    def channels(self) -> list[str]:
        return list(self.data["channels"])

    @property
    def labels(self) -> dict[int, str]:
        """Label value → name, background excluded."""
        return {int(k): str(v) for k, v in self.data["labels"].items() if int(k) != 0}

    @property
    def label_synonyms(self) -> dict[int, list[str]]:
        """Label value → the RTSTRUCT/SEG names that mean it (name first); empty for label-map datasets."""
        return {int(k): [str(n) for n in v] for k, v in (self.data.get("label_synonyms") or {}).items()}

    @property
    def modalities(self) -> list[str]:
        """DICOM Modality per channel when every case agrees (``""`` otherwise)."""
        return list(self.data.get("dicom_modalities") or [""] * len(self.channels))

    def intensity(self, channel: int) -> dict[str, float]:
        """Pooled foreground statistics of ``channel`` (nnU-Net's ``foreground_intensity_properties``)."""
        return dict(self.data["intensity"][channel])

    def label_stats(self, label: int) -> dict[str, Any]:
        return dict(self.data["label_stats"][str(label)])

    @property
    def flags(self) -> dict[str, Any]:
        return dict(self.data["flags"])

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1)


# ---- per case ---------------------------------------------------------------------------------
def _ras_order(affine: np.ndarray) -> list[int]:
    """``order[j]`` = the array axis that becomes RAS axis ``j`` after ``reorient``."""
    from medseg.transforms.functional.orientation import orientation_transform

    transform = orientation_transform(affine, "RAS")
    order = [0, 0, 0]
    for i, (j, _) in enumerate(transform):
        order[int(j)] = i
    return order


def _nonzero_box(image: np.ndarray) -> list[tuple[int, int]]:
    """Bounding box of voxels nonzero in any channel (nnU-Net's ``crop_to_nonzero``; the whole volume if none)."""
    mask = np.any(image != 0, axis=0)
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, mask.shape[axis]))
    return box


def channel_stats(values: np.ndarray, *, quantiles: bool = True) -> dict[str, Any]:
    """Statistics of intensities ``values`` (any shape): count, mean, std, median, min, max, the 0.5 and 99.5
    percentiles and (``quantiles=True``) the 1,001 quantiles that pooling needs. ``{"n": 0}`` when empty.

    Also the intensity statistics of per-case quality control (:mod:`medseg.qc`), without quantiles."""
    if values.size == 0:
        return {"n": 0}
    v = values.astype(np.float64, copy=False)
    p = np.percentile(v, [0.5, 50.0, 99.5])
    out: dict[str, Any] = {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "median": float(p[1]),
        "min": float(v.min()),
        "max": float(v.max()),
        "percentile_00_5": float(p[0]),
        "percentile_99_5": float(p[2]),
    }
    if quantiles:
        out["quantiles"] = [float(f"{q:.7g}") for q in np.quantile(v, QUANTILE_LEVELS)]
    return out


def label_stats(labels: np.ndarray, voxel_mm3: float, *, holes: bool = True) -> dict[str, dict[str, Any]]:
    """Per label value present in ``labels`` ``(X, Y, Z)``: voxels, fraction, volume (mL), connected components
    (26-connectivity), smallest/largest component (mm³) and (``holes=True``) the voxels hole filling would add.

    Also the label statistics of per-case quality control (:mod:`medseg.qc`), without the hole count."""
    from medseg.postprocess.holes import fill_holes

    total = labels.size
    cc = cc3d.connected_components(labels, connectivity=26)  # components of each label separately
    counts = np.bincount(cc.ravel())
    owner = np.zeros(counts.size, dtype=np.int64)
    owner[cc.ravel()] = labels.ravel()
    added = None
    if holes:
        filled = fill_holes(labels, mode="3d")
        added = filled[filled != labels]
    out: dict[str, dict[str, Any]] = {}
    for value in np.unique(labels):
        if value == 0:
            continue
        sizes = counts[1:][owner[1:] == value]
        voxels = int(sizes.sum())
        out[str(int(value))] = {
            "voxels": voxels,
            "fraction": voxels / total,
            "volume_ml": voxels * voxel_mm3 / 1000.0,
            "components": int(sizes.size),
            "smallest_component_mm3": float(sizes.min()) * voxel_mm3,
            "largest_component_mm3": float(sizes.max()) * voxel_mm3,
        }
        if added is not None:
            out[str(int(value))]["hole_voxels"] = int(np.count_nonzero(added == value))
    return out


def analyse_case(
    case: Any, allowed_labels: Sequence[int] | None = None, *, spacing_tolerance: float = SPACING_TOLERANCE
) -> dict[str, Any]:
    """The fingerprint entry of one training case (reads its files as training does, :func:`read_case`).

    Args:
        case: a :class:`medseg.training.dataset.TrainingCase` with a label file.
        allowed_labels: declared label values (with 0); other values raise.
        spacing_tolerance: DICOM slice-gap tolerance (see :func:`medseg.io.read`).

    Raises:
        InputError: unreadable files, undeclared or non-integer label values.
        GeometryError: channels or label on another grid than channel 0.
    """
    from medseg.training.cache import check_label_values, read_case

    t0 = time.perf_counter()
    image, label = read_case(case, spacing_tolerance)
    if label is None:
        raise InputError(f"case '{case.case_id}': no label file; planning needs a label map for every case")
    check_label_values(case, label, allowed_labels)
    read_s = time.perf_counter() - t0
    img = np.asarray(image.numpy(), dtype=np.float32)
    lab = np.asarray(label.numpy())[0].astype(np.int32)
    order = _ras_order(image.affine)
    box = _nonzero_box(img)
    cropped = [b - a for a, b in box]
    foreground = lab > 0
    return {
        "case_id": case.case_id,
        "n_channels": int(img.shape[0]),
        "shape": [int(image.spatial_shape[i]) for i in order],
        "spacing": [float(image.spacing[i]) for i in order],
        "orientation": image.orientation,
        "dicom_modality": str(image.meta.get("modality") or "") if case.images[0].is_dir() else "",
        "shape_after_crop": [int(cropped[i]) for i in order],
        "crop_fraction": float(np.prod(cropped) / np.prod(image.spatial_shape)),
        "channels": [channel_stats(img[c][foreground]) for c in range(img.shape[0])],
        "image_min": [float(img[c].min()) for c in range(img.shape[0])],
        "labels": label_stats(lab, image.voxel_volume_mm3),
        "read_s": read_s,
        "analyse_s": time.perf_counter() - t0,
    }


# ---- cache --------------------------------------------------------------------------------------
def case_key(case: Any, spacing_tolerance: float = SPACING_TOLERANCE) -> tuple[str, list[dict[str, Any]]]:
    """SHA-256 over everything that changes a case's entry: the fingerprint version, the content hashes
    of the case's files, the image series read, the ROI→label mapping and the reader options."""
    from medseg.batch.fingerprint import hash_input

    files = [hash_input(Path(p)) for p in [*case.images, case.label]]
    payload = {
        "version": FINGERPRINT_VERSION,
        "levels": len(QUANTILE_LEVELS),
        "files": [f["sha256"] for f in files],
        "series_uid": case.series_uid,
        "label_names": sorted((int(k), list(v)) for k, v in (case.label_names or {}).items()),
        "spacing_tolerance": float(spacing_tolerance),
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest(), files


def entry_sha256(entry: dict[str, Any]) -> str:
    """SHA-256 of a per-case entry's canonical JSON (keys sorted, compact), its own ``sha256`` left out."""
    body = {k: v for k, v in entry.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _cached_cases(path: Path | None) -> dict[str, dict[str, Any]]:
    """The per-case entries of ``path`` whose checksum holds, by key; an entry that fails it is left out (analysed
    again) with a warning, one without a checksum (written before checksums) silently."""
    if path is None or not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # ValueError: invalid JSON or invalid UTF-8 (a damaged file)
        warnings.warn(
            f"{path}: unreadable fingerprint cache ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
            "every case is analysed again and the file rewritten",
            InputWarning,
            stacklevel=3,
        )
        return {}
    if not isinstance(old, dict) or old.get("version") != FINGERPRINT_VERSION or not isinstance(old.get("cases"), list):
        return {}
    entries = {}
    for c in old["cases"]:
        if not isinstance(c, dict) or not isinstance(c.get("key"), str) or "sha256" not in c:
            continue
        if c["sha256"] != entry_sha256(c):
            warnings.warn(
                f"{path}: the entry of case '{c.get('case_id')}' does not match its checksum (edited or damaged); "
                "the case is analysed again",
                InputWarning,
                stacklevel=3,
            )
            continue
        entries[c["key"]] = c
    return entries


# ---- dataset ------------------------------------------------------------------------------------
def _pooled_intensity(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Statistics of the equal-weight mixture of the cases' foreground intensities (see module docstring)."""
    entries = [e for e in entries if e["n"] > 0]
    if not entries:
        nan = float("nan")
        return dict.fromkeys(("mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5"), nan)
    means = np.array([e["mean"] for e in entries])
    stds = np.array([e["std"] for e in entries])
    mean = float(means.mean())
    std = float(np.sqrt(max(float(np.mean(stds**2 + means**2)) - mean**2, 0.0)))
    pool = np.concatenate([np.asarray(e["quantiles"], dtype=np.float64) for e in entries])
    low, median, high = np.percentile(pool, [0.5, 50.0, 99.5])
    return {
        "mean": mean,
        "std": std,
        "median": float(median),
        "min": float(min(e["min"] for e in entries)),
        "max": float(max(e["max"] for e in entries)),
        "percentile_00_5": float(low),
        "percentile_99_5": float(high),
    }


def _label_summary(cases: list[dict[str, Any]], value: int, name: str) -> dict[str, Any]:
    present = [c for c in cases if str(value) in c["labels"]]
    entries = [c["labels"][str(value)] for c in present]
    out: dict[str, Any] = {
        "name": name,
        "cases_present": len(present),
        "cases_missing": [c["case_id"] for c in cases if str(value) not in c["labels"]],
    }
    if entries:
        volumes = [e["volume_ml"] for e in entries]
        components = [e["components"] for e in entries]
        out.update(
            median_volume_ml=float(np.median(volumes)),
            min_volume_ml=float(min(volumes)),
            max_volume_ml=float(max(volumes)),
            median_fraction=float(np.median([e["fraction"] for e in entries])),
            components_median=float(np.median(components)),
            components_max=int(max(components)),
            single_component=all(n == 1 for n in components),
            smallest_component_mm3=float(min(e["smallest_component_mm3"] for e in entries)),
            hole_voxels=int(sum(e["hole_voxels"] for e in entries)),
        )
    return out


def _flags(cases: list[dict[str, Any]], label_stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    orientations: dict[str, list[str]] = {}
    for c in cases:
        orientations.setdefault(c["orientation"], []).append(c["case_id"])
    spacings = np.array([c["spacing"] for c in cases])
    median = np.median(spacings, axis=0)
    ratio = spacings / median
    outliers = {
        c["case_id"]: c["spacing"]
        for c, r in zip(cases, ratio)
        if (r > SPACING_OUTLIER_FACTOR).any() or (r < 1 / SPACING_OUTLIER_FACTOR).any()
    }
    return {
        "mixed_orientations": orientations if len(orientations) > 1 else {},
        "labels_missing": {
            k: s["cases_missing"] for k, s in label_stats.items() if 0 < s["cases_present"] < len(cases)
        },
        "labels_never_present": [int(k) for k, s in label_stats.items() if s["cases_present"] == 0],
        "spacing_outliers": outliers,
    }


def summarise(dataset: Dataset, cases: list[dict[str, Any]], hashes: dict[str, Any]) -> dict[str, Any]:
    """The dataset-level fingerprint from the per-case entries."""
    counts = {c["n_channels"] for c in cases}
    if len(counts) > 1:
        by = {n: [c["case_id"] for c in cases if c["n_channels"] == n] for n in sorted(counts)}
        detail = "; ".join(
            f"{n} channel(s): {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''}" for n, ids in by.items()
        )
        raise InputError(
            f"{dataset.source}: cases have different channel counts ({detail}); every case needs the same "
            "channels in the same order: split multi-channel files or add the missing channel files"
        )
    n_channels = counts.pop()
    check_declared_channels(dataset, cases, n_channels)
    names = (
        list(dataset.channels) if len(dataset.channels) == n_channels else [f"channel{i}" for i in range(n_channels)]
    )
    found = sorted({int(k) for c in cases for k in c["labels"]})
    labels = {int(k): v for k, v in dataset.labels.items() if int(k) != 0} or {k: f"label_{k}" for k in found}
    label_stats = {str(k): _label_summary(cases, k, labels[k]) for k in sorted(labels)}
    synonyms = next((c.label_names for c in dataset.cases if c.label_names), None) or {}
    modalities = []
    for ch in range(n_channels):
        seen = {c["dicom_modality"] for c in cases}
        modalities.append(seen.pop() if len(seen) == 1 and ch == 0 else "")
    spacings = np.array([c["spacing"] for c in cases])
    data = {
        "version": FINGERPRINT_VERSION,
        "source": str(dataset.source) if dataset.source else None,
        "n_cases": len(cases),
        "channels": names,
        "dicom_modalities": modalities,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "label_synonyms": {str(k): list(v) for k, v in sorted(synonyms.items())},
        "spacing": {
            "median": np.median(spacings, axis=0).tolist(),
            "p10": np.percentile(spacings, 10, axis=0).tolist(),
            "min": spacings.min(axis=0).tolist(),
            "max": spacings.max(axis=0).tolist(),
        },
        "median_shape_after_crop": np.median([c["shape_after_crop"] for c in cases], axis=0).tolist(),
        "median_crop_fraction": float(np.median([c["crop_fraction"] for c in cases])),
        "intensity": [_pooled_intensity([c["channels"][ch] for c in cases]) for ch in range(n_channels)],
        "label_stats": label_stats,
        "cache": hashes,
        "cases": cases,
    }
    data["flags"] = _flags(cases, label_stats)
    data["flags"]["not_like_declared_modality"] = check_declared_modality(dataset, cases, names)
    return data


def fingerprint_dataset(
    data: str | os.PathLike[str] | Dataset,
    *,
    cache: str | os.PathLike[str] | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
) -> Fingerprint:
    """Fingerprint a training dataset (nnU-Net/MSD folder, CSV manifest, folder of DICOM cases).

    Args:
        data: what ``medseg train --data`` accepts, or a loaded Dataset.
        cache: a ``fingerprint.json`` to reuse and (re)write: cases whose files have the same
            content hashes (and the same series, ROI→label mapping and reader options, see
            :func:`case_key`) are taken from it, only new or changed cases are read.
        spacing_tolerance: DICOM slice-gap tolerance (see :func:`medseg.io.read`).

    Returns:
        The :class:`Fingerprint`; ``data["cache"]`` says how many cases were reused.

    Raises:
        InputError: see :func:`medseg.planning.consistency.open_dataset` and
            :func:`analyse_case`; also cases with different channel counts.
        GeometryError: image and label (or channels) on different grids.
    """
    dataset = open_dataset(data)
    cache_path = Path(cache) if cache is not None else None
    cached = _cached_cases(cache_path)
    allowed = sorted({0, *dataset.labels}) if dataset.labels else None
    cases, reused = [], 0
    t0 = time.perf_counter()
    for case in dataset.cases:
        key, files = case_key(case, spacing_tolerance)
        entry = cached.get(key)
        if entry is not None and entry.get("case_id") == case.case_id:
            reused += 1
        else:
            entry = {**analyse_case(case, allowed, spacing_tolerance=spacing_tolerance), "key": key, "files": files}
            entry["sha256"] = entry_sha256(entry)
        cases.append(entry)
    fingerprint = Fingerprint(
        summarise(
            dataset, cases, {"reused": reused, "analysed": len(cases) - reused, "seconds": time.perf_counter() - t0}
        )
    )
    never = fingerprint.flags["labels_never_present"]
    if never:
        warnings.warn(
            f"{dataset.source}: labels {never} are declared but no training case contains them; "
            "the network cannot learn them (remove them from dataset.json or add cases)",
            InputWarning,
            stacklevel=2,
        )
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_path, fingerprint.to_json())
    return fingerprint


def load_fingerprint(path: str | os.PathLike[str]) -> Fingerprint:
    """Read a ``fingerprint.json`` written by :func:`fingerprint_dataset`.

    Raises:
        InputError: missing, unreadable or of another version.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: invalid JSON or invalid UTF-8
        raise InputError(f"{p}: cannot read the fingerprint ({exc}); run 'medseg plan' again") from exc
    if not isinstance(data, dict) or data.get("version") != FINGERPRINT_VERSION:
        raise InputError(f"{p}: fingerprint of another medseg version; run 'medseg plan' again")
    return Fingerprint(data)
