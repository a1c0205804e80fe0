"""Pipeline files: shipped ones validate and round-trip; every mistake names the path and suggests a fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from medseg.core.steps import Step, register_step
from medseg.errors import ConfigError
from medseg.pipeline import Pipeline
from tests.conftest import ROOT

SHIPPED = sorted((ROOT / "pipelines").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


BASE = """
name: t
input: {modality: CT, labels: {1: liver}}
preprocess:
  - reorient: {axcodes: RAS}
  - resample: {spacing: [1.5, 1.5, 1.5]}
network: {name: unet, options: {n_stages: 3, base_channels: 4}}
inference: {patch_size: [32, 32, 32]}
postprocess:
  - keep_largest_component: {}
"""


def test_at_least_four_pipelines_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"brain_mask_mr", "ct_organs", "mr_multichannel", "ct_slices_2d"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_pipeline_validates_and_round_trips(path, tmp_path):
    p = Pipeline.from_yaml(path)
    again = Pipeline.from_yaml(_write(tmp_path, p.to_yaml()))
    assert again == p
    assert again.to_dict() == p.to_dict()
    assert again.fingerprint() == p.fingerprint()


def test_python_twin_equals_yaml(tmp_path):
    from medseg.postprocess import KeepLargestComponent
    from medseg.transforms import Reorient, Resample

    code = Pipeline(
        name="t",
        input={"modality": "CT", "labels": {1: "liver"}},
        preprocess=[Reorient(axcodes="RAS"), Resample(spacing=(1.5, 1.5, 1.5))],
        network={"name": "unet", "options": {"n_stages": 3, "base_channels": 4}},
        inference={"patch_size": [32, 32, 32]},
        postprocess=[KeepLargestComponent()],
    )
    assert code == Pipeline.from_yaml(_write(tmp_path, BASE))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("preprocess:", "preprocces:", r"top level: unknown key 'preprocces' \(did you mean 'preprocess'\?\)"),
        (
            "inference: {patch_size",
            "inference: {overlapp: 0.3, patch_size",
            r"inference: unknown key 'overlapp' \(did you mean 'overlap'\?\)",
        ),
        ("- resample:", "- resampel:", r"preprocess\[1\]: unknown step 'resampel' \(did you mean 'resample'\?\)"),
        (
            "{spacing: [1.5",
            "{spacin: [1.5",
            r"preprocess\[1\]\.resample: unknown option 'spacin' \(did you mean 'spacing'\?\)",
        ),
        ("{spacing: [1.5, 1.5, 1.5]}", "{spacing: [-1.5, 1.5, 1.5]}", r"preprocess\[1\]\.resample: .*spacing"),
        ("{spacing: [1.5, 1.5, 1.5]}", "{spacing: fine}", r"preprocess\[1\]\.resample\.spacing"),
        (
            "{spacing: [1.5, 1.5, 1.5]}",
            "{spacing: [1.5, 1.5, 1.5], grid: corner}",
            r"preprocess\[1\]\.resample\.grid: Input should be 'extent' or 'first_voxel' \(got 'corner'",
        ),
        (
            "{patch_size: [32, 32, 32]}",
            "{patch_size: [32, 32, 32], overlap: 1.5}",
            r"inference\.overlap: Input should be less than 1",
        ),
        ("{name: unet,", "{name: unnet,", r"network\.name: unknown network 'unnet' \(did you mean 'unet'\?\)"),
        ("labels: {1: liver}", "labels: {0: liver}", r"input\.labels: .*≥ 1"),
        (
            "  - keep_largest_component: {}",
            "  - keep_largest_component: {}\n  - zscore: {}",
            r"postprocess\[1\]\.zscore: 'zscore' is a preprocess step",
        ),
        (
            "input: {modality: CT,",
            "input: {modality: CT, chanels: [a],",
            r"input: unknown key 'chanels' \(did you mean 'channels'\?\)",
        ),
    ],
)
def test_mistakes_name_the_path(tmp_path, old, new, expected):
    assert old in BASE
    path = _write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected) as err:
        Pipeline.from_yaml(path)
    assert str(err.value).count(str(path)) == 1


def test_tabs_are_reported_with_line(tmp_path):
    path = _write(tmp_path, "name: t\npreprocess:\n\t- reorient: {}\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line 3, column 1.*tab"):
        Pipeline.from_yaml(path)


def test_empty_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        Pipeline.from_yaml(_write(tmp_path, ""))
    with pytest.raises(ConfigError, match="mapping of sections"):
        Pipeline.from_yaml(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not found"):
        Pipeline.from_yaml(tmp_path / "missing.yaml")


def test_yaml_tags_are_not_executed(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        Pipeline.from_yaml(path)


def test_user_defined_step_registered_from_python(tmp_path):
    @register_step("test_add_constant")
    @dataclass(frozen=True)
    class AddConstant(Step):
        value: float = 1.0

        def __call__(self, volume):
            return volume.with_step(volume.numpy() + self.value, None, self.entry())

    text = BASE.replace("  - resample: {spacing: [1.5, 1.5, 1.5]}", "  - test_add_constant: {value: 2.5}")
    p = Pipeline.from_yaml(_write(tmp_path, text))
    assert p.preprocess[1] == AddConstant(value=2.5)
    with pytest.raises(ConfigError, match=r"test_add_constant\.value"):
        Pipeline.from_yaml(_write(tmp_path, text.replace("2.5", "lots")))


def test_every_mistake_is_reported_at_once_with_its_path(tmp_path):
    text = (
        BASE.replace("preprocess:", "preprocces: []\npreprocess:")
        .replace("{spacing: [1.5", "{spacin: [1.5")
        .replace("{name: unet,", "{name: unnet,")
        .replace("inference: {patch_size", "inference: {overlapp: 0.3, patch_size")
        + "training: {max_epoch: 3, batch_size: two}\nexport: [sttl: {}]\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        Pipeline.from_yaml(path)
    lines = str(err.value).splitlines()
    assert lines[0] == "7 problems:"
    expected = [
        "top level: unknown key 'preprocces' (did you mean 'preprocess'?)",
        "inference: unknown key 'overlapp' (did you mean 'overlap'?)",
        "preprocess[1].resample: unknown option 'spacin' (did you mean 'spacing'?)",
        "network.name: unknown network 'unnet' (did you mean 'unet'?)",
        "training: unknown option 'max_epoch' (did you mean 'max_epochs'?)",
        "training.batch_size: Input should be a valid integer",
        "export[0]: unknown exporter 'sttl' (did you mean 'stl'?)",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in lines[1:]) == 1, (fragment, lines)
    assert all(line.strip().startswith(str(path)) for line in lines[1:])


def test_reference_documents_every_key_and_is_up_to_date():
    from medseg.pipeline.reference import reference_markdown, sections

    for section, rows in sections().items():
        for key, _, _, text in rows:
            assert text, f"{section}.{key} has no description (add it to the class's Attributes: docstring)"
    committed = (ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "docs/pipeline.md is stale: python -m medseg.pipeline.reference > docs/pipeline.md"
    )


def test_validate_prints_the_effective_values(tmp_path):
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "validate", str(ROOT / "pipelines" / "ct_organs.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "training    patch [96, 96, 96], batch 2, 300 epochs × 250 iterations, sgd lr 0.01 (poly)" in res.stdout
    assert "    iterations_per_epoch: 250" in res.stdout and "    grad_clip: 12.0" in res.stdout  # defaults shown too
