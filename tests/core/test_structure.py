"""How the package hangs together: core imports nothing above it, start-up is lazy, built-ins register
themselves in one place, usage errors are the user's, one device resolver."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.errors import ConfigError
from tests.conftest import ROOT

CORE = ROOT / "medseg" / "core"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_never_imports_upward(path: Path) -> None:
    upward = {
        m for m in _imports(path) if m.startswith("medseg.") and not m.startswith(("medseg.core", "medseg.errors"))
    }
    assert not upward, f"{path.name} imports {sorted(upward)}"


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_import_and_help_do_not_import_the_heavy_libraries() -> None:
    res = _fresh(
        "import sys, medseg\n"
        "from medseg.cli.main import main\n"
        "code = main(['--help'])\n"
        "heavy = [m for m in ('torch', 'nibabel', 'pydicom', 'SimpleITK', 'monai', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy, code)"
    )
    assert "HEAVY [] 0" in res.stdout, res.stdout + res.stderr


def test_info_on_nifti_does_not_import_torch() -> None:
    res = _fresh(
        "import sys\nfrom medseg.cli.main import main\n"
        "code = main(['info', 'sample_data/colin27/ch2.nii.gz'])\nprint('TORCH', 'torch' in sys.modules, code)"
    )
    assert "TORCH False 0" in res.stdout, res.stdout + res.stderr


def test_builtins_are_found_by_name_without_importing_their_modules() -> None:
    res = _fresh(
        "from medseg.core.steps import build_step\n"
        "from medseg.core.registry import Registry\n"
        "step = build_step('resample', spacing=2.0)\n"
        "from medseg.export import EXPORTERS\n"
        "print('OK', type(step).__name__, 'rtstruct' in EXPORTERS or 'stl' in EXPORTERS)"
    )
    assert "OK Resample True" in res.stdout, res.stdout + res.stderr


def test_network_metadata_lives_in_the_registry_entry() -> None:
    from medseg.networks import NETWORKS, network_info

    info = NETWORKS.info("unet")
    assert info is network_info("unet") and info.task == "segmentation"
    assert NETWORKS.info("conv_block_classifier").task == "classification"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["predcit"], "error: No such command 'predcit'. Did you mean 'predict'? (see 'medseg --help')"),
        (["info", "x", "--jsn"], "error: No such option: --jsn"),
    ],
)
def test_usage_errors_are_one_line_with_did_you_mean(argv: list[str], expected: str) -> None:
    res = subprocess.run([sys.executable, "-m", "medseg.cli", *argv], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), res.stderr
    assert "internal error" not in res.stderr


def test_one_device_resolver() -> None:
    import torch

    from medseg.core.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"--device: unknown device 'tpu'.*auto, cpu, cuda"):
        resolve_device("tpu", option="--device")
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:1", "gpu", "GPU:0"):
            with pytest.raises(ConfigError, match=r"training.device is .* no CUDA GPU .*set training.device to auto"):
                resolve_device(name, option="training.device")


def test_predictor_and_trainer_use_the_same_resolver() -> None:
    import medseg.inference.predictor as predictor
    import medseg.training.trainer as trainer
    from medseg.core.device import resolve_device

    assert predictor.resolve_device is resolve_device and trainer.resolve_device is resolve_device


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (inside functions too), leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_pipeline_package_depends_one_way() -> None:
    """config ← weights ← predict/train/stages/processor ← pipeline: no module imports one that imports it back."""
    package = ROOT / "medseg" / "pipeline"
    graph = {
        f"medseg.pipeline.{p.stem}": {m for m in _runtime_imports(p) if m.startswith("medseg.pipeline.")}
        for p in package.glob("*.py")
        if p.stem != "__init__"
    }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and (seen.add(nxt) or reaches(nxt, target, seen))):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, f"import cycles through {cycles}: { ({m: sorted(graph[m]) for m in cycles}) }"
    # the Pipeline facade sits on top: the modules it delegates to never import it back (type hints aside)
    back = sorted(m for m, deps in graph.items() if "medseg.pipeline.pipeline" in deps)
    assert not back, f"{back} import medseg.pipeline.pipeline at run time"
