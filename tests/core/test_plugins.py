"""Third-party plugins (entry points) are loaded in isolation: a broken one warns, the rest keeps working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from medseg import builtins
from medseg.core.steps import STEPS, build_step
from medseg.errors import PluginWarning

GOOD_PLUGIN = """
from dataclasses import dataclass
from medseg.core.steps import Step, register_step

@register_step("plugin_identity")
@dataclass(frozen=True)
class PluginIdentity(Step):
    def __call__(self, volume):
        return volume
"""


def _distribution(folder: Path, name: str, entry_points: str) -> metadata.Distribution:
    """An installed-looking distribution ``name`` (a ``.dist-info`` folder) declaring ``entry_points``."""
    info = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return metadata.PathDistribution(info)


@pytest.fixture
def fresh_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let register_builtins run again; what a plugin registers is dropped after the test."""
    builtins.register_builtins()  # the built-ins stay registered in the dict restored after the test
    monkeypatch.setattr(builtins, "_done", False)
    monkeypatch.setattr(builtins, "_plugins", [])
    monkeypatch.setattr(STEPS, "_items", dict(STEPS._items))


def test_broken_plugin_warns_once_and_leaves_builtins_and_other_plugins_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registries: None
) -> None:
    (tmp_path / "good_plugin_mod.py").write_text(GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = _distribution(tmp_path, "broken-plugin", "[medseg.steps]\nx = missing_plugin_mod:Step\n")
    good = _distribution(tmp_path, "good-plugin", "[medseg.steps]\nplugin_identity = good_plugin_mod\n")
    found = [*broken.entry_points, *good.entry_points]
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep for ep in found if ep.group == group])

    with pytest.warns(PluginWarning) as caught:
        assert "plugin_identity" in STEPS  # a lookup of a missing name loads built-ins and plugins
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "broken-plugin" in messages[0] and "x = missing_plugin_mod:Step" in messages[0]
    assert "ModuleNotFoundError: No module named 'missing_plugin_mod'" in messages[0]
    assert "\n" not in messages[0]

    # built-ins and the good plugin keep working, on this lookup and the next ones
    assert type(build_step("resample", spacing=2.0)).__name__ == "Resample"
    assert type(build_step("plugin_identity")).__name__ == "PluginIdentity"
    assert "plugin_identity" in STEPS.names()

    report = {p.name: p for p in builtins.plugin_report()}
    assert report["plugin_identity"].loaded and report["plugin_identity"].distribution == "good-plugin"
    assert not report["x"].loaded and report["x"].distribution == "broken-plugin"
    assert report["x"].error == "ModuleNotFoundError: No module named 'missing_plugin_mod'"


def test_plugin_that_raises_while_registering_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registries: None
) -> None:
    (tmp_path / "clashing_plugin_mod.py").write_text(
        GOOD_PLUGIN.replace('"plugin_identity"', '"resample"')  # takes a built-in's name
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    dist = _distribution(tmp_path, "clashing-plugin", "[medseg.steps]\nresample = clashing_plugin_mod\n")
    monkeypatch.setattr(metadata, "entry_points", lambda group: list(dist.entry_points))
    with pytest.warns(PluginWarning, match=r"clashing-plugin.*ConfigError: step 'resample' is already registered"):
        builtins.register_builtins()
    assert type(build_step("resample", spacing=2.0)).__module__ == "medseg.transforms.resample"


def _medseg(plugin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_with_broken_plugin_validates_and_lists_it(tmp_path: Path) -> None:
    _distribution(tmp_path, "broken-plugin", "[medseg.steps]\nx = missing:Step\n")
    root = Path(__file__).resolve().parents[2]
    res = _medseg(tmp_path, "validate", str(root / "pipelines" / "ct_organs.yaml"))
    assert res.returncode == 0, res.stderr
    assert "internal error" not in res.stderr
    assert "warning: plugin medseg.steps: x = missing:Step (from broken-plugin) was not loaded" in res.stderr

    listed = _medseg(tmp_path, "info", "--plugins")
    assert listed.returncode == 0, listed.stderr
    assert (
        "FAILED  medseg.steps: x = missing:Step (from broken-plugin): ModuleNotFoundError: No module named 'missing'"
        in listed.stdout
    )
    as_json = _medseg(tmp_path, "info", "--plugins", "--json")
    assert json.loads(as_json.stdout) == [
        {
            "group": "medseg.steps",
            "name": "x",
            "value": "missing:Step",
            "distribution": "broken-plugin",
            "error": "ModuleNotFoundError: No module named 'missing'",
        }
    ]
