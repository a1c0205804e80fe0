"""Pipeline steps: small frozen dataclasses registered by snake_case name.

A step is called on a :class:`Volume` and returns a new one. A spatial step appends a
:class:`HistoryEntry` holding exactly what its :meth:`Step.inverse` needs, so
:func:`medseg.transforms.invert` can walk a prediction back to the input grid.
Intensity steps append an entry too (for provenance); their inverse on a
prediction is the identity.

Register a user-defined step from Python::

    @register_step("my_clip")
    @dataclass(frozen=True)
    class MyClip(Step):
        upper: float = 100.0
        def __call__(self, volume): ...

or through the ``medseg.steps`` entry-point group of another package.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from medseg.core.registry import Registry
from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import GeometryError

Stage = Literal["preprocess", "postprocess"]
S = TypeVar("S", bound=type)

#: Every registered step, whatever its stage.
STEPS: Registry[type[Step]] = Registry("step")


class Step(abc.ABC):
    """Base of all steps. Subclasses are frozen dataclasses whose fields are their options."""

    name: ClassVar[str] = ""
    stage: ClassVar[Stage] = "preprocess"

    @abc.abstractmethod
    def __call__(self, volume: Volume) -> Volume:
        """Apply the step; return a new Volume (history extended for spatial steps)."""

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Undo this step on ``volume`` (a prediction on the step's output grid).

        The default is the identity (intensity steps). Spatial steps override it and
        use ``entry.state`` (e.g. the grid before the step).
        """
        return volume

    def options(self) -> dict[str, Any]:
        """The step's options as plain data (for YAML/JSON)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}  # type: ignore[arg-type]

    def entry(self, **state: Any) -> HistoryEntry:
        """A history entry for this step with ``state``."""
        return HistoryEntry(self.name, state)


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def register_step(name: str, stage: Stage = "preprocess") -> Callable[[S], S]:
    """Class decorator: register a :class:`Step` subclass under ``name`` for ``stage``."""

    def deco(cls: S) -> S:
        cls.name = name  # type: ignore[attr-defined]
        cls.stage = stage  # type: ignore[attr-defined]
        STEPS.register(name)(cls)  # type: ignore[arg-type]
        return cls

    return deco


def build_step(name: str, **options: Any) -> Step:
    """Instantiate the step registered as ``name`` with ``options`` (did-you-mean on typos)."""
    return STEPS.build(name, **options)  # type: ignore[no-any-return]


def invert(prediction: Volume, history: tuple[HistoryEntry, ...] | list[HistoryEntry]) -> Volume:
    """Walk ``history`` backwards so ``prediction`` lands on the grid before the first step.

    ``prediction`` must lie on the grid the last step produced. Probabilities/logits are
    resampled (linear) before any argmax; labels use nearest neighbour.

    Raises:
        GeometryError: a step in ``history`` is unknown, or the prediction's grid does
            not match what the history says.
    """
    out = prediction
    for entry in reversed(tuple(history)):
        cls = STEPS.get(entry.step)
        expected = entry.state.get("out_shape")
        if expected is not None and tuple(expected) != out.spatial_shape:
            raise GeometryError(
                f"cannot invert '{entry.step}': prediction has shape {out.spatial_shape} but the step produced "
                f"{tuple(expected)}; was the prediction made on this volume's pre-processed grid?"
            )
        out = cls.inverse(out, entry)
    return out.replace(history=())
