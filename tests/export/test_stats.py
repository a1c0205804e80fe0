"""Per-label statistics: voxels, mL, bounding box and centroid in RAS mm, intensity, CSV = JSON."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medseg.core import Volume
from medseg.export import EXPORTERS
from tests.conftest import AFFINES


def test_statistics_match_numpy(tmp_path):
    affine = AFFINES["oblique"]
    lab = np.zeros((20, 18, 12), np.uint8)
    lab[2:6, 3:9, 1:4] = 1
    lab[10:12, 10:11, 5:10] = 3
    rng = np.random.default_rng(0)
    img = rng.normal(50, 10, lab.shape).astype(np.float32)
    mask = Volume(lab[None], affine, kind="label")
    image = Volume(img[None], affine)
    csv_path, json_path = EXPORTERS.build("stats")(mask, tmp_path, "c", image=image, labels={1: "a", 2: "absent"})
    doc = json.loads(json_path.read_text())
    recs = {r["label"]: r for r in doc["labels"]}
    vox_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert doc["voxel_volume_mm3"] == pytest.approx(vox_mm3)
    assert recs[1]["voxels"] == 4 * 6 * 3 and recs[3]["voxels"] == 2 * 1 * 5
    assert recs[1]["volume_ml"] == pytest.approx(72 * vox_mm3 / 1000)
    assert recs[2]["voxels"] == 0 and recs[2]["bbox_min_ras_mm"] is None
    assert recs[3]["name"] == "label_3"
    idx = np.argwhere(lab == 1)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(recs[1]["bbox_min_ras_mm"], world.min(axis=0), atol=1e-3)
    np.testing.assert_allclose(recs[1]["bbox_max_ras_mm"], world.max(axis=0), atol=1e-3)
    np.testing.assert_allclose(recs[1]["centroid_ras_mm"], world.mean(axis=0), atol=1e-3)
    assert recs[1]["mean_intensity"] == pytest.approx(float(img[lab == 1].mean()), rel=1e-6)
    assert recs[1]["std_intensity"] == pytest.approx(float(img[lab == 1].std()), rel=1e-5)
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [int(r["label"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["volume_ml"]) == pytest.approx(recs[1]["volume_ml"])
    assert [float(v) for v in rows[0]["bbox_min_ras_mm"].split()] == pytest.approx(recs[1]["bbox_min_ras_mm"])
    assert rows[1]["mean_intensity"] == ""


def test_phantom_volumes_in_ml(phantom, tmp_path):
    image, label = phantom
    (json_path,) = EXPORTERS.build("stats", formats=("json",))(label, tmp_path, "p", image=image)
    doc = json.loads(json_path.read_text())
    total = sum(r["volume_ml"] for r in doc["labels"])
    assert total == pytest.approx(np.count_nonzero(label.numpy()) * 1.2 * 1.1 * 3.0 / 1000)
    assert not doc["empty"]


def test_stats_without_image_and_bad_format(phantom, tmp_path):
    _, label = phantom
    (path,) = EXPORTERS.build("stats", formats=("csv",))(label, tmp_path, "p")
    assert path.name == "p_stats.csv"
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="formats"):
        EXPORTERS.build("stats", formats=("xlsx",))(label, tmp_path, "p")


def test_exporter_and_postprocess_step_report_the_same_records(tmp_path):
    """One owner: the stats file and the label_statistics step hold the same fields and numbers."""
    from medseg.core.steps import build_step

    affine = AFFINES["oblique"]
    lab = np.zeros((12, 10, 8), np.uint8)
    lab[2:6, 3:9, 1:4] = 1
    lab[8:10, 1:3, 5:7] = 2
    mask = Volume(lab[None], affine, kind="label")
    (json_path,) = EXPORTERS.build("stats", formats=("json",))(mask, tmp_path, "c", labels={1: "a", 2: "b"})
    from_export = json.loads(json_path.read_text())["labels"]
    from_step = build_step("label_statistics", names={1: "a", 2: "b"})(mask).meta["statistics"]
    assert from_export == json.loads(json.dumps(from_step))
