"""Shared pieces of the benchmark scripts: phantoms, the shared network, child processes, the machine.

Every contender runs in its own child process (``python benchmarks/<script>.py --child ...``)
that prints one JSON line; its peak resident memory (``VmHWM``) is measured inside that
child only, so one contender's allocations never pollute another's number.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
#: CT input spacing of the end-to-end benchmark (mm, X Y Z).
CT_SPACING = (0.8, 0.8, 2.5)
#: Target spacing of both pipelines (mm, isotropic).
TARGET_SPACING = 1.5
#: HU window mapped to [0, 1].
HU_WINDOW = (-160.0, 240.0)
#: Label values of ``medseg.data.ct_phantom`` (0 = background).
LABELS = {0: "background", 1: "liver", 2: "spleen", 3: "kidney_left", 4: "lesion"}
#: Intensity normalisations the benchmarks know, as medseg pipeline ``preprocess`` entries:
#: ``"ct"`` (:data:`HU_WINDOW` → [0, 1]) or ``"zscore"`` (whole image to mean 0, sd 1; MR).
INTENSITY_STEPS: dict[str, list[dict[str, dict[str, Any]]]] = {
    "ct": [
        {"clip": {"low": HU_WINDOW[0], "high": HU_WINDOW[1]}},
        {"scale_intensity": {"low": HU_WINDOW[0], "high": HU_WINDOW[1]}},
    ],
    "zscore": [{"zscore": {"over": "image"}}],
}
UNET_CHANNELS = (8, 16, 32, 64)
UNET_STRIDES = (2, 2, 2)


def parse_size(text: str) -> tuple[int, int, int]:
    """``"512,512,200"`` → ``(512, 512, 200)``."""
    parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) != 3 or min(parts) < 8:
        raise SystemExit(f"--size must be three sizes X,Y,Z of at least 8 voxels, got {text!r}")
    return parts[0], parts[1], parts[2]


def make_unet(n_classes: int = len(LABELS), seed: int = 0) -> torch.nn.Module:
    """The benchmark network: a small seeded ``monai.networks.nets.UNet`` (3D, 1 input channel)."""
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(3, 1, n_classes, channels=UNET_CHANNELS, strides=UNET_STRIDES, num_res_units=1)


def load_unet(weights: Path, n_classes: int = len(LABELS)) -> torch.nn.Module:
    """The benchmark network with the weights saved by the parent (``weights_only`` loading)."""
    net = make_unet(n_classes)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


#: What :func:`trained_unet` trains; a change retrains (the cached file is named after it).
#: The cases cover the e2e CT's field of view (512×512×200 at 0.8×0.8×2.5 mm ≈ 410×410×500 mm) at the
#: pipelines' 1.5 mm, so the organs have the sizes the benchmark network meets.
TRAINING_RECIPE = {
    "cases": 6,
    "shape": (273, 273, 333),
    "spacing": 1.5,
    "patch": 64,
    "epochs": 100,
    "iterations": 25,
    "lr": 3e-3,
}
#: ``--quick`` (smoke test): the same training path in seconds; its labels mean nothing.
QUICK_RECIPE = {**TRAINING_RECIPE, "cases": 2, "shape": (64, 64, 64), "patch": 32, "epochs": 1, "iterations": 2}


def trained_unet(out: Path, recipe: dict[str, Any] = TRAINING_RECIPE) -> Path:
    """The benchmark network trained briefly on CT phantoms (medseg's Trainer, the e2e pre-processing), so
    that label agreement between contenders means something; trained once and cached under ``out``.

    Returns:
        a ``state_dict`` file for :func:`load_unet`.
    """
    import hashlib

    from medseg.data import write_phantom_dataset
    from medseg.pipeline import Pipeline
    from medseg.training import load_checkpoint

    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    weights = out / f"unet_trained_{key}.pt"
    if weights.exists():
        return weights
    r = recipe
    data = write_phantom_dataset(out / f"train_phantoms_{key}", r["cases"], r["shape"], (r["spacing"],) * 3, seed=100)
    pipeline = Pipeline(
        name="benchmark-unet",
        input={"modality": "CT", "channels": ["CT"], "labels": {k: v for k, v in LABELS.items() if k}},
        preprocess=[
            {"reorient": {"axcodes": "RAS"}},
            {"resample": {"spacing": [TARGET_SPACING] * 3}},
            *INTENSITY_STEPS["ct"],
        ],
        network={
            "name": "monai.unet",
            "options": {"channels": list(UNET_CHANNELS), "strides": list(UNET_STRIDES), "num_res_units": 1},
        },
        training={
            "patch_size": [r["patch"]] * 3, "max_epochs": r["epochs"], "iterations_per_epoch": r["iterations"],
            "optimizer": "adamw", "lr": r["lr"], "device": "cpu", "progress": False,
        },
    )  # fmt: skip
    result = pipeline.train(data, out / f"train_run_{key}", fold=None, resume=False)
    torch.save(load_checkpoint(result.best_checkpoint).state_dict, weights)
    return weights


def write_ct_case(path: Path, size: Sequence[int], seed: int = 0) -> Path:
    """Write a seeded CT phantom ``size`` at :data:`CT_SPACING` (HU, int16) and its label map.

    Returns:
        ``path``; the label goes to ``path`` with ``_label`` before the suffix. Existing
        files are reused (the phantom is deterministic for a given size and seed).
    """
    from medseg.core import make_affine
    from medseg.data import ct_phantom
    from medseg.io import write

    label_path = path.with_name(path.name.replace(".nii.gz", "_label.nii.gz"))
    if path.exists() and label_path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    origin = tuple(-0.5 * n * s for n, s in zip(size, CT_SPACING))
    image, label = ct_phantom(tuple(size), CT_SPACING, affine=make_affine(CT_SPACING, origin), seed=seed)
    write(image, path)
    write(label, label_path)
    return path


def peak_rss_mib() -> float:
    """Peak resident memory of this process (``VmHWM``, MiB); ``ru_maxrss`` where /proc is missing."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mib(device: str) -> float | None:
    """Peak CUDA memory allocated by torch (MiB), or None off CUDA."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


class Timer:
    """Named wall-clock stages: ``with timer("network"): ...``; ``timer.seconds`` maps name → s."""

    def __init__(self, device: str = "cpu") -> None:
        self.seconds: dict[str, float] = {}
        self.device = device

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def _sync(self) -> None:
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()


def child_result(result: dict[str, Any], device: str = "cpu") -> None:
    """Print a child's result as the last stdout line, with its peak RSS and GPU memory."""
    result["peak_rss_mib"] = peak_rss_mib()
    gpu = peak_gpu_mib(device)
    if gpu is not None:
        result["peak_gpu_mib"] = gpu
    print(json.dumps(result), flush=True)


def run_child(script: Path, args: Sequence[str], log: Path | None = None, timeout: float | None = None) -> dict:
    """Run ``python script args...`` in a fresh process; return its last stdout line as JSON.

    stderr (and stdout) go to ``log`` when given, so a failure can be read afterwards.

    Raises:
        RuntimeError: the child failed; the message has the command and the end of its output.
    """
    cmd = [sys.executable, str(script), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def run_e2e(
    method: str, image: Path, weights: Path, out: Path, patch: int, log: Path, extra: Sequence[str] = ()
) -> dict:
    """``benchmarks/e2e.py`` for one contender (``medseg`` or ``monai``) in its own process."""
    args = ["--method", method, "--image", str(image), "--weights", str(weights), "--out", str(out)]
    return run_child(ROOT / "benchmarks" / "e2e.py", [*args, "--patch", str(patch), *extra], log=log)


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    """Dice of ``label`` between two label arrays (1.0 when absent from both)."""
    x, y = a == label, b == label
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(x, y).sum()) / total


def machine() -> dict[str, str]:
    """CPU, cores, memory, OS, Python/torch/MONAI versions, git commit and date."""
    import monai

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 2**20:.1f} GiB"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "commit": commit,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs`` formatted, or ``-``."""
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table, or ``-``."""
    return "-" if value is None else f"{value:.{digits}f}"


def medseg_intensity_steps(kind: str) -> list:
    """medseg pre-processing steps for intensity normalisation ``kind`` (see :data:`INTENSITY_STEPS`)."""
    from medseg.core import build_step

    if kind not in INTENSITY_STEPS:
        raise ValueError(f"intensity {kind!r}: choose from {sorted(INTENSITY_STEPS)}")
    return [build_step(name, **options) for entry in INTENSITY_STEPS[kind] for name, options in entry.items()]


def monai_intensity_transform(kind: str) -> Any:
    """The MONAI dictionary transform (key ``image``) doing what :func:`medseg_intensity_steps` does."""
    from monai.transforms import NormalizeIntensityd, ScaleIntensityRanged

    if kind == "ct":
        return ScaleIntensityRanged("image", a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True)
    if kind == "zscore":
        return NormalizeIntensityd("image")
    raise ValueError(f"intensity {kind!r}: choose from {sorted(INTENSITY_STEPS)}")


def write_nnunet_dataset(
    root: Path,
    cases: Sequence[tuple[str, Any, Any]],
    labels: dict[int, str] | None = None,
    channel: str = "CT",
) -> Path:
    """Write ``(case_id, image, label)`` cases in the nnU-Net raw layout.

    ``root/imagesTr/{id}_0000.nii.gz``, ``root/labelsTr/{id}.nii.gz`` and ``dataset.json``
    (``channel`` names the one input channel: nnU-Net normalises ``CT`` with its CT scheme,
    anything else with a z-score; file ending ``.nii.gz``); medseg's ``load_dataset`` and
    nnU-Net read it. ``image`` and ``label`` are Volumes, or files already written in place
    (``None``).
    """
    from medseg.io import write, write_text_atomic

    labels = labels or LABELS
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case_id, image, label in cases:
        if image is not None:
            write(image, root / "imagesTr" / f"{case_id}_0000.nii.gz")
        if label is not None:
            write(label, root / "labelsTr" / f"{case_id}.nii.gz")
    meta = {
        "channel_names": {"0": channel},
        "labels": {name: value for value, name in sorted(labels.items())},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    write_text_atomic(root / "dataset.json", json.dumps(meta, indent=1))
    return root


def update_section(path: Path, name: str, text: str) -> None:
    """Replace the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``.

    The block is appended when missing (the file is created when missing); the rest of
    the file (commentary written by hand) is kept. Written atomically.
    """
    from medseg.io import write_text_atomic

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# medseg benchmark results\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(path, new)


def load_average() -> str:
    """1/5/15-minute load average (the machine may be shared), or ``unknown``."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"
