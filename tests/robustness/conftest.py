"""Shared set-up of the robustness suite: hypothesis profiles, seed files, "nothing written" checks.

Hypothesis profiles (select with ``MEDSEG_FUZZ_PROFILE``):

* ``ci`` (default): few examples, no deadline, derandomised so CI is reproducible and fast.
* ``long``: thousands of examples per property, random seeds; see ``README.md``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, settings

from medseg.errors import InputWarning, MedsegError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("MEDSEG_FUZZ_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("MEDSEG_FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile(os.environ.get("MEDSEG_FUZZ_PROFILE", "ci"))


def assert_empty(folder: Path) -> None:
    """``folder`` is absent or holds no file at any depth (nothing was written)."""
    if folder.exists():
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert not files, f"files were written despite the failure: {files}"


def expect_error(
    call: Callable[[], object], error: type[MedsegError], *fragments: str, name: str | os.PathLike[str] | None = None
) -> MedsegError:
    """Run ``call``; it must raise ``error`` whose message holds every fragment and the file name.

    InputWarnings are allowed on the way (suspicious inputs warn before they fail).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        with pytest.raises(error) as info:
            call()
    message = str(info.value)
    if name is not None:
        assert Path(name).name in message, f"message does not name {Path(name).name}: {message}"
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in message: {message}"
    assert "\n" not in message.strip() or "cases" in message, f"message should be one line: {message}"
    return info.value


@pytest.fixture(scope="session")
def small_nifti(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 24×20×16 crop of Colin27 T1 (uint8, oblique-free 1 mm), as ``.nii`` and ``.nii.gz``."""
    img = nib.load(str(SAMPLE / "colin27" / "ch2.nii.gz"))
    crop = np.asarray(img.dataobj[78:102, 100:120, 80:96])
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([78, 100, 80]) + img.affine[:3, 3]
    folder = tmp_path_factory.mktemp("seed_nifti")
    out = {}
    for suffix in (".nii", ".nii.gz"):
        path = folder / f"colin_crop{suffix}"
        nib.save(nib.Nifti1Image(crop, affine), str(path))
        out[suffix] = path
    return out


@pytest.fixture
def quiet_inputs() -> Iterator[None]:
    """Ignore InputWarnings (the fuzzers only care about what is raised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        yield
