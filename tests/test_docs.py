"""The examples in docstrings run (doctest), so they cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import medseg

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(medseg.__path__, "medseg.")
    if not m.name.endswith("__main__") and ".export.assets" not in m.name
)


def _has_examples(name: str) -> bool:
    module = importlib.import_module(name)
    return bool(doctest.DocTestFinder().find(module)) and any(t.examples for t in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("name", [m for m in MODULES if _has_examples(m)])
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_doctests_were_found() -> None:
    """The examples named in the public API exist (a rename would silently drop them)."""
    with_examples = {m for m in MODULES if _has_examples(m)}
    assert {"medseg.pipeline.pipeline", "medseg.training", "medseg.networks", "medseg.export.base"} <= with_examples
