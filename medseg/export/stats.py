"""Per-label statistics for reports: ``CASE_stats.csv`` and ``CASE_stats.json`` (same records).

The records are :func:`medseg.postprocess.statistics.label_statistics` (voxels, volume in mL,
bounding box in voxels and in world RAS mm around the labelled voxel centres, centroid,
intensity inside the label); every named label gets a row, with zero voxels when absent.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.io import write_text_atomic
from medseg.postprocess.statistics import FIELDS, label_statistics


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
        records = label_statistics(case.label_volume(), case.image, case.labels)
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
