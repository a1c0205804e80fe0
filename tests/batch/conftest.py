"""Fixtures of the batch tests: folders of small CT phantom cases written as NIfTI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import medseg
from medseg.data import ct_phantom


def write_cases(folder: Path, n: int, shape=(24, 20, 12), seed0: int = 0) -> list[Path]:
    """Write ``n`` phantom CTs ``case_000.nii.gz``, ... into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image, _ = ct_phantom(shape, (1.5, 1.5, 2.5), seed=seed0 + i)
        paths.append(medseg.write(image, folder / f"case_{i:03d}.nii.gz"))
    return paths


@pytest.fixture
def case_folder(tmp_path: Path) -> Callable[..., Path]:
    """``case_folder(n=4, name="in")``: a folder of ``n`` NIfTI phantom cases."""

    def _make(n: int = 4, name: str = "in") -> Path:
        folder = tmp_path / name
        write_cases(folder, n)
        return folder

    return _make
