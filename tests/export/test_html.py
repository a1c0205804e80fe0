"""HTML viewer: self-contained page (no network), and a headless Chromium check that niivue renders it."""

from __future__ import annotations

import base64
import gzip
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.export import EXPORTERS

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_page_is_self_contained(phantom, tmp_path):
    image, label = phantom
    (path,) = EXPORTERS.build("html")(label, tmp_path, "c", image=image, labels={1: "liver"})
    page = path.read_text()
    assert path.name == "c_viewer.html"
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=", page), "page must not load external files"
    bundle = re.search(r'const BUNDLE_GZ = "([A-Za-z0-9+/=]+)"', page)
    assert bundle and gzip.decompress(base64.b64decode(bundle.group(1))).startswith(b"(function(")
    assert "liver" in page and "label_2" in page
    assert 1_000_000 < path.stat().st_size < 2_000_000  # niivue (0.8 MB gzip) + data


def test_page_embeds_meshes_on_request(phantom, tmp_path):
    image, label = phantom
    (path,) = EXPORTERS.build("html", meshes=True)(label, tmp_path, "c", image=image)
    assert path.read_text().count('"rgba255"') == 4


def _chromium(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--enable-unsafe-swiftshader",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=15000",
        "--window-size=800,600",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_chromium_renders_the_page(phantom, tmp_path):
    image, label = phantom
    (path,) = EXPORTERS.build("html", meshes=True)(label, tmp_path, "case_1", image=image, labels={1: "liver"})
    url = path.resolve().as_uri()
    dom = _chromium(url, tmp_path, "--dump-dom")
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title, dom.stderr[-2000:]
    assert title.group(1) == "case_1: ready (2 volumes, 4 meshes)", title.group(1)
    shot = tmp_path / "shot.png"
    _chromium(url, tmp_path, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    canvas = pixels[40:]  # below the title bar
    assert canvas.std() > 20, "screenshot is blank"
    assert (canvas.sum(axis=2) > 60).mean() > 0.2, "too little is drawn"


def test_large_ct_page_stays_small_and_says_what_it_shows(tmp_path):
    from medseg.data import ct_phantom
    from medseg.export.html import MAX_DISPLAY_SIZE, display_image

    image, label = ct_phantom((512, 512, 61), (0.7, 0.7, 2.5), seed=1)
    (path,) = EXPORTERS.build("html")(label, tmp_path, "ct", image=image)
    assert path.stat().st_size < 6_000_000  # was ~25 MB with the image embedded as int16 at full size
    page = path.read_text()
    assert "image shown as 8 bits, window -160..240, averaged to 1.4 × 1.4 × 2.5 mm for display" in page
    assert "sagittalNoseLeft: true" in page and "meshThicknessOn2D: 0" in page
    data, affine, _ = display_image(image)
    assert data.dtype == np.uint8 and max(data.shape) <= MAX_DISPLAY_SIZE and data.shape == (256, 256, 61)
    # a display voxel sits at the centre of the 2×2×1 block it averages
    centre = image.affine @ np.array([0.5, 0.5, 0.0, 1.0])
    assert np.allclose(affine @ np.array([0, 0, 0, 1.0]), centre)
