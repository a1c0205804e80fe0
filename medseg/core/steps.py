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

import numpy as np

from medseg.core.registry import Registry
from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import GeometryError

Stage = Literal["preprocess", "postprocess"]
#: A box of voxels: ``((start, stop), ...)`` per spatial axis, stops exclusive.
Box = tuple[tuple[int, int], ...]
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

    @classmethod
    def restrict(
        cls, entry: HistoryEntry, box: Box, out_shape: tuple[int, ...], out_affine: np.ndarray
    ) -> tuple[HistoryEntry, Box] | None:
        """For inverting onto part of the step's input grid only (see :func:`invert_region`).

        Args:
            entry: the step's history entry.
            box: the part of the step's input grid wanted.
            out_shape: the step's output grid shape.
            out_affine: the step's output grid affine.

        Returns:
            ``(entry for that part, box of the output grid its inverse reads)``, or None when the step
            cannot invert a part (the default: the whole grid is inverted then).
        """
        return None

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


def regions_invertible(history: tuple[HistoryEntry, ...] | list[HistoryEntry]) -> bool:
    """True when every step of ``history`` inverts to the identity or can invert a part of its grid
    (:meth:`Step.restrict`, with the grid recorded in its entry): then :func:`invert_region` works."""
    for entry in history:
        cls = STEPS.get(entry.step)
        if cls.inverse.__func__ is Step.inverse.__func__:  # type: ignore[attr-defined]
            continue  # intensity steps: the identity
        if cls.restrict.__func__ is Step.restrict.__func__ or "in_shape" not in entry.state:  # type: ignore[attr-defined]
            return False
    return True


def invert_region(prediction: Volume, history: tuple[HistoryEntry, ...] | list[HistoryEntry], box: Box) -> Volume:
    """:func:`invert` for the ``box`` of the grid before the first step only: the result is what ``invert``
    gives there (up to float rounding), computed from the part of ``prediction`` it depends on.

    Returns:
        A Volume on the sub-grid ``box`` (its affine is the first grid's, shifted to ``box``).

    Raises:
        GeometryError: a step cannot invert a part (check :func:`regions_invertible` first).
    """
    if not regions_invertible(history):
        raise GeometryError("invert_region: a step of this history cannot invert part of its grid; use invert()")
    spatial = [e for e in history if STEPS.get(e.step).inverse.__func__ is not Step.inverse.__func__]  # type: ignore[attr-defined]
    if not spatial:
        return _sub_volume(prediction, box)
    outputs = [(tuple(int(s) for s in e.state["in_shape"]), np.asarray(e.state["in_affine"])) for e in spatial[1:]]
    outputs.append((prediction.spatial_shape, prediction.affine))
    restricted, current = [], box
    for entry, (out_shape, out_affine) in zip(spatial, outputs):
        step = STEPS.get(entry.step).restrict(entry, current, out_shape, out_affine)
        if step is None:
            raise GeometryError(f"invert_region: step '{entry.step}' cannot invert part of its grid; use invert()")
        sub_entry, current = step
        restricted.append(sub_entry)
    return invert(_sub_volume(prediction, current), restricted)


def _sub_volume(volume: Volume, box: Box) -> Volume:
    """The part ``box`` of ``volume``, with the affine of that part."""
    shift = np.eye(4)
    shift[:3, 3] = [start for start, _ in box]
    index = (slice(None), *(slice(start, stop) for start, stop in box))
    return volume.replace(array=volume.array[index], affine=volume.affine @ shift)


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
