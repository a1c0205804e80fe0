"""Self-contained HTML viewer page per case (niivue), working offline from the file system.

The page embeds everything: the niivue UMD bundle (vendored gzip-compressed in
``medseg/export/assets``, decompressed in the browser), the image and the label map
as gzip NIfTI, and optionally the meshes (STL, RAS). It shows the multiplanar view
plus a 3D rendering with the segmentation overlaid in the label colours and a legend.

To keep pages small, the image is embedded for display only: windowed to 8 bits (CT: the
soft-tissue window; otherwise the 0.5–99.5 percentiles, as the PNG preview) and averaged down
so that no axis exceeds :data:`MAX_DISPLAY_SIZE` voxels; the page says so. The label map is
embedded at full resolution (it compresses to little). Views follow the PNG preview: the
patient's right on the viewer's left, sagittal with the nose on the left. Meshes are drawn
in the 3D view only, so the 2D slices stay visible.
When loading finishes the page sets ``document.title`` to ``"<case>: ready"`` (or
``"<case>: error: ..."``) and the ``#status`` element to the same text, so tests and
users can tell it worked.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.core.volume import Volume
from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.export.labels import label_color
from medseg.export.mesh import file_bytes, mask_mesh
from medseg.io import write_text_atomic

BUNDLE = "niivue.umd.js.gz"
#: Largest number of voxels along any axis of the embedded display image.
MAX_DISPLAY_SIZE = 256

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@@TITLE@@: loading</title>
<style>
  html, body { margin: 0; height: 100%; background: #000; color: #ddd; font: 14px sans-serif; }
  body { display: flex; flex-direction: column; overflow: hidden; }
  #bar { flex: 0 0 auto; display: flex; gap: 1em; align-items: center; padding: 4px 8px; flex-wrap: wrap; }
  #view { flex: 1 1 auto; min-height: 0; position: relative; }
  #gl { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
  .sw { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
</style>
</head>
<body>
<div id="bar"><strong>@@TITLE@@</strong><span id="legend">@@LEGEND@@</span><span id="note">@@NOTE@@</span><span id="status">loading</span></div>
<div id="view"><canvas id="gl"></canvas></div>
<script>
"use strict";
const CASE = @@CASE@@;
const BUNDLE_GZ = "@@BUNDLE@@";
const VOLUMES = @@VOLUMES@@;
const MESHES = @@MESHES@@;
const LUT = @@LUT@@;
const CENTER = @@CENTER@@;
function report(text) {
  document.title = CASE + ": " + text;
  document.getElementById("status").textContent = text;
}
window.addEventListener("error", (e) => report("error: " + e.message));
window.addEventListener("unhandledrejection", (e) => report("error: " + (e.reason && e.reason.message || e.reason)));
function bytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
async function gunzipText(b64) {
  const stream = new Blob([bytes(b64)]).stream().pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}
function blobUrl(b64) {
  return URL.createObjectURL(new Blob([bytes(b64)], { type: "application/octet-stream" }));
}
async function main() {
  const code = await gunzipText(BUNDLE_GZ);
  await new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    s.onload = resolve;
    s.onerror = () => reject(new Error("niivue bundle failed to load"));
    document.head.appendChild(s);
  });
  const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false,
    isRadiologicalConvention: true, sagittalNoseLeft: true, meshThicknessOn2D: 0 });
  await nv.attachTo("gl");
  nv.setSliceType(nv.sliceTypeMultiplanar);
  await nv.loadVolumes(VOLUMES.map((v) => ({ url: blobUrl(v.data), name: v.name, colormap: v.colormap, opacity: v.opacity })));
  const labels = nv.volumes[nv.volumes.length - 1];
  if (LUT.I.length > 1) {
    labels.setColormapLabel(LUT);
    nv.updateGLVolume();
  }
  if (MESHES.length) {
    await nv.loadMeshes(MESHES.map((m) => ({ url: blobUrl(m.data), name: m.name, rgba255: m.rgba255 })));
  }
  if (CENTER) {
    nv.scene.crosshairPos = nv.mm2frac(CENTER);
    nv.createOnLocationChange();
  }
  nv.drawScene();
  report("ready (" + nv.volumes.length + " volumes, " + nv.meshes.length + " meshes)");
}
main().catch((e) => report("error: " + (e && e.message || e)));
</script>
</body>
</html>
"""


def _nifti_b64(data: np.ndarray, affine: np.ndarray) -> str:
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    try:
        img.set_qform(affine, code=1)
    except Exception:  # nibabel raises plain Exceptions for sheared affines; the sform is exact
        img.set_qform(None, code=0)
    return base64.b64encode(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)).decode("ascii")


def bundle_b64() -> str:
    """The vendored niivue bundle (gzip) as base64."""
    return base64.b64encode(resources.files("medseg.export").joinpath("assets", BUNDLE).read_bytes()).decode("ascii")


def display_image(image: Volume) -> tuple[np.ndarray, np.ndarray, str]:
    """The image as embedded in the page: ``(uint8 array (X', Y', Z'), its affine, a note for the page)``.

    Windowed like the PNG preview (CT soft tissue, else 0.5–99.5 percentiles) to 0..255, and averaged
    over blocks of ``f`` voxels along every axis longer than :data:`MAX_DISPLAY_SIZE` (the affine scales
    by ``f`` and moves to the block centres, so the picture stays where the image is).
    """
    from medseg.export.preview import _window

    data = image.numpy()[0].astype(np.float32)
    lo, hi = _window(data, str(image.meta.get("modality", "")))
    scaled = np.clip((data - lo) / (hi - lo), 0.0, 1.0) * 255.0
    factors = [max(1, -(-int(n) // MAX_DISPLAY_SIZE)) for n in scaled.shape]
    if any(f > 1 for f in factors):
        crop = tuple(slice(0, (n // f) * f) for n, f in zip(scaled.shape, factors))
        c = scaled[crop]
        shape = [(n // f, f) for n, f in zip(c.shape, factors)]
        scaled = c.reshape([v for pair in shape for v in pair]).mean(axis=(1, 3, 5))
    step = np.diag([*factors, 1]).astype(np.float64)
    step[:3, 3] = [(f - 1) / 2 for f in factors]
    note = f"image shown as 8 bits, window {lo:g}..{hi:g}"
    if any(f > 1 for f in factors):
        spacing = np.array(image.spacing) * factors
        note += f", averaged to {' × '.join(f'{v:.2g}' for v in spacing)} mm for display"
    return np.round(scaled).astype(np.uint8), image.affine @ step, note + "; labels at full resolution"


def render_page(case: ExportCase, *, meshes: bool = False, mask_opacity: float = 0.5) -> str:
    """The HTML text of the viewer page of ``case``."""
    vols = []
    note = ""
    if case.image is not None:
        data, affine, note = display_image(case.image)
        vols.append({"name": "image.nii.gz", "data": _nifti_b64(data, affine), "colormap": "gray", "opacity": 1.0})
    vols.append(
        {
            "name": "labels.nii.gz",
            "data": _nifti_b64(case.label_volume().numpy()[0], case.affine),
            "colormap": "gray",
            "opacity": float(mask_opacity) if case.image is not None else 1.0,
        }
    )
    present = case.present
    lut: dict[str, list[int | str]] = {"R": [0], "G": [0], "B": [0], "A": [0], "I": [0], "labels": [""]}
    for v in present:
        r, g, b = label_color(v)
        for key, val in zip("RGBAI", (r, g, b, 255, v)):
            lut[key].append(val)
        lut["labels"].append(case.labels[v])
    mesh_items = []
    if meshes:
        for v in present:
            mesh = mask_mesh(case.label_map == v, case.affine, coordinates="RAS")
            stl = file_bytes(mesh.export(file_type="stl"))
            mesh_items.append(
                {
                    "name": f"label_{v}.stl",
                    "data": base64.b64encode(stl).decode("ascii"),
                    "rgba255": [*label_color(v), 255],
                }
            )
    legend = (
        " ".join(
            f'<span><span class="sw" style="background: rgb{label_color(v)}"></span>{html.escape(case.labels[v])}</span>'
            for v in present
        )
        or "empty mask: no labelled voxels"
    )
    center = None
    if present:
        idx = np.argwhere(case.label_map > 0).mean(axis=0)
        center = [round(float(c), 3) for c in case.affine[:3, :3] @ idx + case.affine[:3, 3]]
    replacements = {
        "@@CENTER@@": json.dumps(center),
        "@@TITLE@@": html.escape(case.case_id),
        "@@NOTE@@": html.escape(note),
        "@@LEGEND@@": legend,
        "@@CASE@@": json.dumps(case.case_id),
        "@@BUNDLE@@": bundle_b64(),
        "@@VOLUMES@@": json.dumps(vols),
        "@@MESHES@@": json.dumps(mesh_items),
        "@@LUT@@": json.dumps(lut),
    }
    page = _PAGE
    for key, value in replacements.items():
        page = page.replace(key, value)
    return page


@register_exporter("html")
@dataclass(frozen=True)
class HtmlExporter(Exporter):
    """``CASE_viewer.html``: an offline niivue page with the image, the label overlay and a legend.

    Attributes:
        meshes: also embed per-label surface meshes in the 3D view.
        mask_opacity: overlay opacity over the image (0..1).
    """

    name = "html"
    meshes: bool = False
    mask_opacity: float = 0.5

    def export(self, case: ExportCase) -> list[Path]:
        """Write the viewer page."""
        from medseg.errors import ConfigError

        if not 0.0 <= self.mask_opacity <= 1.0:
            raise ConfigError(f"html: mask_opacity {self.mask_opacity} must be within 0..1")
        page = render_page(case, meshes=self.meshes, mask_opacity=self.mask_opacity)
        return [write_text_atomic(case.path("_viewer.html"), page)]
