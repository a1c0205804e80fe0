"""Per-label statistics for reports: voxels, volume (mL), bounding box and centroid (mm), intensity.

Written as ``CASE_stats.csv`` and ``CASE_stats.json`` (same records). World
coordinates are RAS millimetres of voxel centres; the bounding box is the
axis-aligned box in world space around the labelled voxel centres.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.io import write_text_atomic

FIELDS = (
    "label",
    "name",
    "voxels",
    "volume_ml",
    "bbox_min_ras_mm",
    "bbox_max_ras_mm",
    "centroid_ras_mm",
    "mean_intensity",
    "std_intensity",
    "min_intensity",
    "max_intensity",
)


def label_statistics(case: ExportCase) -> list[dict[str, Any]]:
    """One record per label of ``case`` (labels without voxels get zeros and None).

    Volumes use ``|det(affine)|`` mm³ per voxel; 1 mL = 1000 mm³. Intensity
    statistics are over the image's first channel (None without an image).
    """
    lab = case.label_map
    values = list(case.labels)
    vox_ml = float(abs(np.linalg.det(case.affine[:3, :3]))) / 1000.0
    counts = np.bincount(lab.ravel(), minlength=max(values, default=0) + 1)
    image = case.image.numpy()[0].astype(np.float64) if case.image is not None else None
    boxes = ndimage.find_objects(lab.astype(np.int64, copy=False), max_label=max(values, default=0)) if values else []
    out = []
    for v in values:
        n = int(counts[v])
        rec: dict[str, Any] = {"label": v, "name": case.labels[v], "voxels": n, "volume_ml": n * vox_ml}
        rec.update(dict.fromkeys(FIELDS[4:]))
        if n:
            sl = boxes[v - 1]
            sub = lab[sl] == v
            idx = np.argwhere(sub) + np.array([s.start for s in sl])
            world = idx @ case.affine[:3, :3].T + case.affine[:3, 3]
            rec["bbox_min_ras_mm"] = [round(float(c), 3) for c in world.min(axis=0)]
            rec["bbox_max_ras_mm"] = [round(float(c), 3) for c in world.max(axis=0)]
            rec["centroid_ras_mm"] = [round(float(c), 3) for c in world.mean(axis=0)]
            if image is not None:
                vals = image[sl][sub]
                rec["mean_intensity"] = float(vals.mean())
                rec["std_intensity"] = float(vals.std())
                rec["min_intensity"] = float(vals.min())
                rec["max_intensity"] = float(vals.max())
        out.append(rec)
    return out


def records_csv(records: list[dict[str, Any]]) -> str:
    """CSV text of the records; vectors become ``x y z`` strings, None becomes empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        row = {}
        for k in FIELDS:
            v = rec.get(k)
            row[k] = "" if v is None else " ".join(f"{c:g}" for c in v) if isinstance(v, list) else v
        writer.writerow(row)
    return buf.getvalue()


@register_exporter("stats")
@dataclass(frozen=True)
class StatsExporter(Exporter):
    """``CASE_stats.csv`` and ``CASE_stats.json``: per-label voxels, mL, bounding box, intensity.

    Attributes:
        formats: which files to write, ``("csv", "json")`` by default.
    """

    name = "stats"
    formats: tuple[str, ...] = ("csv", "json")

    def export(self, case: ExportCase) -> list[Path]:
        """Write the statistics files."""
        from medseg.errors import ConfigError

        bad = [f for f in self.formats if f not in ("csv", "json")]
        if bad or not self.formats:
            raise ConfigError(f"stats: formats {list(self.formats)}; use 'csv' and/or 'json'")
        records = label_statistics(case)
        out = []
        if "csv" in self.formats:
            out.append(write_text_atomic(case.path("_stats.csv"), records_csv(records)))
        if "json" in self.formats:
            doc = {
                "case_id": case.case_id,
                "spacing_mm": [round(s, 6) for s in case.mask.spacing],
                "voxel_volume_mm3": case.mask.voxel_volume_mm3,
                "empty": case.is_empty,
                "labels": records,
            }
            out.append(write_text_atomic(case.path("_stats.json"), json.dumps(doc, indent=2) + "\n"))
        return out
