"""Preview PNG: radiological orientation, aspect by spacing, overlay colours, legend."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medseg.core import Volume, make_affine
from medseg.export import EXPORTERS, label_color, prepare
from medseg.export.preview import _canonical, _panels
from tests.conftest import AFFINES


def right_anterior_superior_blob(affine: np.ndarray, shape=(30, 24, 16)) -> Volume:
    """Label 1 in the patient's right-anterior-superior corner, label 2 in the opposite one."""
    idx = np.indices(shape).reshape(3, -1).T.astype(float)
    ras = idx @ affine[:3, :3].T + affine[:3, 3]
    center = ras.mean(axis=0)
    d = ras - center
    extent = np.abs(d).max(axis=0)
    lab = np.zeros(len(idx), np.uint8)
    lab[np.all(d > 0.25 * extent, axis=1)] = 1  # +x = right, +y = anterior, +z = superior
    lab[np.all(d < -0.25 * extent, axis=1)] = 2
    return Volume(lab.reshape(shape)[None], affine, kind="label")


@pytest.mark.parametrize("affine", ["ras", "lps", "anisotropic"])
def test_views_follow_radiological_convention(affine, tmp_path):
    vol = right_anterior_superior_blob(AFFINES[affine])
    lab, sp = _canonical(vol.numpy()[0], vol.affine)
    center = tuple(int(c) for c in np.argwhere(lab == 1).mean(axis=0).round())
    for name, (panel, _) in zip(("axial", "coronal", "sagittal"), _panels(lab, center, sp)):
        rows, cols = np.nonzero(panel == 1)
        # axial: right on the left, anterior on top; coronal: right on the left, superior on top;
        # sagittal: anterior on the left, superior on top: label 1 always in the upper-left quadrant
        assert cols.mean() < panel.shape[1] / 2, name
        assert rows.mean() < panel.shape[0] / 2, name


def test_aspect_follows_spacing():
    affine = make_affine((0.5, 0.7, 5.0), (0, 0, 0))
    lab = np.zeros((10, 10, 10), np.uint8)
    lab, sp = _canonical(lab, affine)
    aspects = [a for _, a in _panels(lab, (5, 5, 5), sp)]
    assert aspects == pytest.approx([0.7 / 0.5, 5.0 / 0.5, 5.0 / 0.7])


def test_png_shows_overlay_colours_and_legend(phantom, tmp_path):
    image, label = phantom
    (path,) = EXPORTERS.build("png", alpha=1.0)(label, tmp_path, "c", image=image, labels={1: "liver"})
    png = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    assert png.size == (1200, 460)
    pixels = np.asarray(png).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(pixels, axis=0)}
    for value in (1, 2, 3, 4):  # each present label is drawn (overlay and legend patch)
        assert tuple(label_color(value)) in colours
    # the legend sits below the panels: label colours appear in the bottom strip
    bottom = np.asarray(png)[-60:].reshape(-1, 3)
    assert any((bottom == label_color(1)).all(axis=1))


def test_empty_mask_png_says_so(phantom, tmp_path):
    image, label = phantom
    empty = label.replace(array=np.zeros_like(label.numpy()))
    with pytest.warns(Warning, match="empty"):
        case = prepare(empty, tmp_path, "e", image=image)
    (path,) = EXPORTERS.get("png")().export(case)
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.std() > 5  # the image is drawn even without labels
