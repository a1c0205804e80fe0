"""Preview PNG: axial, coronal and sagittal slices through the segmented region.

Slices are shown in radiological convention after reorienting to the nearest RAS
axes: axial and coronal with the patient's right on the viewer's left, anterior
(axial) or superior (coronal, sagittal) at the top, sagittal with anterior on the
left. Pixel aspect follows the voxel spacing; edges carry orientation letters; the
mask is overlaid in its label colours with a legend (name, volume in mL).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation

from medseg.core import geometry
from medseg.errors import ConfigError
from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.export.labels import label_color
from medseg.io import write_bytes_atomic

#: (name, edge letters left/right/top/bottom) of the three panels.
VIEWS = (("axial", "RLAP"), ("coronal", "RLSI"), ("sagittal", "APSI"))


def _canonical(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``arr`` (X, Y, Z) reordered/flipped to the nearest RAS axes, and its spacing."""
    ornt = io_orientation(affine)
    out = apply_orientation(arr, ornt)
    sp = np.array(geometry.spacing(affine))
    return out, tuple(float(sp[int(np.flatnonzero(ornt[:, 0] == k)[0])]) for k in range(3))  # type: ignore[return-value]


def _panels(
    vol: np.ndarray, center: tuple[int, int, int], sp: tuple[float, float, float]
) -> list[tuple[np.ndarray, float]]:
    """2D display arrays (rows, cols) and pixel aspect (height/width) for the three views."""
    i, j, k = center
    sx, sy, sz = sp
    return [
        (vol[::-1, ::-1, k].T, sy / sx),  # axial: rows A→P, cols R→L
        (vol[::-1, j, ::-1].T, sz / sx),  # coronal: rows S→I, cols R→L
        (vol[i, ::-1, ::-1].T, sz / sy),  # sagittal: rows S→I, cols A→P
    ]


def _rgb01(value: int) -> tuple[float, float, float]:
    r, g, b = label_color(value)
    return r / 255.0, g / 255.0, b / 255.0


def _window(image: np.ndarray, modality: str) -> tuple[float, float]:
    if modality == "CT":
        return -160.0, 240.0  # soft-tissue window (level 40, width 400 HU)
    finite = image[np.isfinite(image)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def render_preview(case: ExportCase, *, alpha: float = 0.45, dpi: int = 100) -> bytes:
    """PNG bytes of the three-view preview of ``case`` (the image, or black without one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lab, sp = _canonical(case.label_map, case.affine)
    if case.image is not None:
        img = _canonical(case.image.numpy()[0].astype(np.float32), case.affine)[0]
        vmin, vmax = _window(img, str(case.image.meta.get("modality", "")))
    else:
        img, vmin, vmax = np.zeros(lab.shape, np.float32), 0.0, 1.0
    if case.is_empty:
        center = tuple(s // 2 for s in lab.shape)
    else:
        center = tuple(round(float(c)) for c in np.argwhere(lab > 0).mean(axis=0))
    lut = np.zeros((int(lab.max()) + 1, 4), np.float32)
    for v in case.present:
        lut[v, :3] = _rgb01(v)
        lut[v, 3] = alpha
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), dpi=dpi, facecolor="black")
    for ax, (name, letters), (im2d, aspect), (lab2d, _) in zip(
        axes, VIEWS, _panels(img, center, sp), _panels(lab, center, sp)
    ):
        ax.imshow(im2d, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
        ax.imshow(lut[lab2d], aspect=aspect, interpolation="nearest")
        ax.set_title(name, color="white", fontsize=11)
        ax.set_axis_off()
        for (x, y, ha, va), letter in zip(
            (
                (0.01, 0.5, "left", "center"),
                (0.99, 0.5, "right", "center"),
                (0.5, 0.99, "center", "top"),
                (0.5, 0.01, "center", "bottom"),
            ),
            letters,
        ):
            ax.text(x, y, letter, transform=ax.transAxes, ha=ha, va=va, color="yellow", fontsize=12, weight="bold")
    vox_ml = case.mask.voxel_volume_mm3 / 1000.0
    counts = np.bincount(case.label_map.ravel(), minlength=int(case.label_map.max()) + 1)
    handles = [
        Patch(color=_rgb01(v), label=f"{v}: {case.labels[v]} ({counts[v] * vox_ml:.3g} mL)") for v in case.present
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(4, len(handles)),
            frameon=False,
            labelcolor="white",
            fontsize=10,
        )
    else:
        fig.text(0.5, 0.03, "empty mask: no labelled voxels", ha="center", color="white", fontsize=11)
    fig.suptitle(case.case_id, color="white", fontsize=12)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.88, bottom=0.12, wspace=0.04)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="black")
    plt.close(fig)
    return buf.getvalue()


@register_exporter("png")
@dataclass(frozen=True)
class PreviewExporter(Exporter):
    """``CASE_preview.png``: three orthogonal slices through the mask with a coloured overlay and legend.

    Attributes:
        alpha: overlay opacity (0..1).
        dpi: resolution (the figure is 12 × 4.6 inches).
    """

    name = "png"
    alpha: float = 0.45
    dpi: int = 100

    def export(self, case: ExportCase) -> list[Path]:
        """Write the preview PNG."""
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"png: alpha {self.alpha} must be within 0..1")
        if not 20 <= self.dpi <= 600:
            raise ConfigError(f"png: dpi {self.dpi} must be within 20..600")
        return [write_bytes_atomic(case.path("_preview.png"), render_preview(case, alpha=self.alpha, dpi=self.dpi))]
