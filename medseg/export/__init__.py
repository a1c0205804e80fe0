"""Export for 3D viewers, PACS and reports.

Registered exporters (``EXPORTERS``), usable from Python, pipelines (``export:``)
and ``medseg export``:

- ``nifti``, ``nrrd``: label maps on the exact input grid + label-name sidecar.
- ``seg_nrrd``: 3D Slicer segmentation with segment names and colours.
- ``dicom_seg``: DICOM Segmentation referencing the source series (highdicom).
- ``rtstruct``: DICOM RT Structure Set, contours on voxel edges, referencing the source series.
- ``stl``, ``obj``, ``ply``: surface meshes per label in world mm (LPS by default).
- ``png``: preview with three orthogonal slices, coloured overlay and legend.
- ``stats``: per-label voxels, volume (mL), bounding box (mm), intensity statistics.
- ``html``: self-contained offline viewer page (niivue).
"""

from __future__ import annotations

from medseg.export import dicom_seg, html, labelmap, mesh, preview, rtstruct, stats
from medseg.export.base import (
    EXPORTERS,
    ExportCase,
    Exporter,
    build_exporters,
    check_case_id,
    export_all,
    exporter_name,
    exporter_names,
    prepare,
    register_exporter,
)
from medseg.export.dicom_seg import DicomSegExporter, read_dicom_seg
from medseg.export.labelmap import NiftiExporter, NrrdExporter, SlicerSegExporter
from medseg.export.labels import label_color, label_table, load_labels, parse_labels
from medseg.export.mesh import MeshExporter, ObjExporter, PlyExporter, StlExporter, mask_mesh
from medseg.export.rtstruct import RtstructExporter

__all__ = [
    "EXPORTERS",
    "DicomSegExporter",
    "ExportCase",
    "Exporter",
    "MeshExporter",
    "NiftiExporter",
    "NrrdExporter",
    "ObjExporter",
    "PlyExporter",
    "RtstructExporter",
    "SlicerSegExporter",
    "StlExporter",
    "build_exporters",
    "check_case_id",
    "dicom_seg",
    "export_all",
    "exporter_name",
    "exporter_names",
    "html",
    "label_color",
    "label_table",
    "labelmap",
    "load_labels",
    "mask_mesh",
    "mesh",
    "parse_labels",
    "prepare",
    "preview",
    "read_dicom_seg",
    "register_exporter",
    "rtstruct",
    "stats",
]
