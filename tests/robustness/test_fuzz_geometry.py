"""Property tests: reorient / resample / crop / pad, then ``invert``, land exactly on the original grid.

Random oblique affines (any rotation, also with a flipped axis), anisotropic spacings,
odd and even shapes. Reorient, crop and pad move no voxel values, so label maps must
come back bit-identical; resampling must at least restore the grid.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from medseg.core import Volume, make_affine
from medseg.errors import MedsegError
from medseg.transforms import Crop, Pad, Reorient, Resample, invert

AXCODES = ["RAS", "LPS", "LAS", "RPI", "SAR", "PIL", "ASL", "IRP"]

spacings = st.tuples(*[st.floats(0.3, 6.0, allow_nan=False) for _ in range(3)])
shapes = st.tuples(st.integers(2, 14), st.integers(2, 14), st.integers(1, 10))


@st.composite
def volumes(draw: st.DrawFn, kind: str = "label") -> Volume:
    quat = draw(st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(lambda q: np.linalg.norm(q) > 0.1))
    rot = Rotation.from_quat(np.asarray(quat) / np.linalg.norm(quat)).as_matrix()
    if draw(st.booleans()):
        rot = rot @ np.diag([1.0, 1.0, -1.0])  # a left-handed grid (e.g. DICOM slices stored head first)
    origin = draw(st.tuples(*[st.floats(-300, 300) for _ in range(3)]))
    affine = make_affine(draw(spacings), origin, rot)
    shape = draw(shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "label":
        array = rng.integers(0, 4, size=(1, *shape)).astype(np.uint8)
    else:
        array = rng.normal(size=(2, *shape)).astype(np.float32)
    return Volume(array, affine, kind=kind)  # type: ignore[arg-type]


def _prediction_on(prep: Volume, seed: int = 0) -> Volume:
    """A label 'prediction' on the pre-processed grid (as a model would return it)."""
    rng = np.random.default_rng(seed)
    return Volume(rng.integers(0, 3, size=(1, *prep.spatial_shape)).astype(np.uint8), prep.affine, kind="label")


@given(vol=volumes(), axcodes=st.sampled_from(AXCODES), pad=st.integers(1, 8), crop_frac=st.floats(0.3, 1.0))
def test_reorient_pad_crop_round_trip_is_exact(vol: Volume, axcodes: str, pad: int, crop_frac: float) -> None:
    reoriented = Reorient(axcodes)(vol)
    cols = np.sort(np.abs(vol.direction), axis=0)
    if np.all(cols[-1] - cols[-2] > 0.05):  # each axis clearly nearest one world axis (no 45° ties)
        assert reoriented.orientation == axcodes
    padded = Pad(multiple_of=(pad, pad, 1))(reoriented)
    crop_shape = tuple(max(1, int(n * crop_frac)) for n in padded.spatial_shape)
    prep = Crop(shape=crop_shape)(padded)
    # every voxel keeps its world position: compare one voxel through both affines
    idx = np.array([s // 2 for s in prep.spatial_shape] + [1])
    world = prep.affine @ idx
    src_idx = np.linalg.solve(vol.affine, world)[:3]
    assert np.allclose(src_idx, np.round(src_idx), atol=1e-6)
    back = invert(prep, prep.history)
    assert back.grid.matches(vol.grid, atol=1e-6)
    assert back.spatial_shape == vol.spatial_shape
    # inside the kept box the values are the original ones, outside background
    original = vol.numpy()
    restored = np.asarray(back.numpy())
    kept = restored != 0
    assert np.array_equal(restored[kept], original[kept])
    without_crop = invert(padded, padded.history)
    assert np.array_equal(np.asarray(without_crop.numpy()), original)
    assert without_crop.grid.matches(vol.grid, atol=1e-6)


@given(vol=volumes(kind="intensity"), axcodes=st.sampled_from(AXCODES), spacing=spacings, pad=st.integers(1, 8))
def test_full_chain_then_invert_returns_the_original_grid(vol: Volume, axcodes: str, spacing, pad: int) -> None:
    target = tuple(min(s, 4 * o) for s, o in zip(spacing, vol.spacing))  # keep the resampled grid small
    prep = Pad(multiple_of=pad)(Resample(spacing=target)(Reorient(axcodes)(vol)))
    prediction = _prediction_on(prep)
    back = invert(prediction, prep.history)
    assert back.spatial_shape == vol.spatial_shape
    assert np.allclose(back.affine, vol.affine, atol=1e-6), np.abs(back.affine - vol.affine).max()
    assert back.kind == "label" and back.numpy().dtype.kind in "iu"
    assert set(np.unique(back.numpy())) <= {0, 1, 2}


@given(vol=volumes(kind="intensity"), shape=st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(1, 12)))
def test_resample_to_shape_and_back_keeps_extent(vol: Volume, shape) -> None:
    out = Resample(shape=shape)(vol)
    assert out.spatial_shape == shape
    extent_in = np.asarray(vol.spacing) * vol.spatial_shape
    extent_out = np.asarray(out.spacing) * out.spatial_shape
    assert np.allclose(extent_in, extent_out, rtol=1e-6)
    back = invert(out, out.history)
    assert back.grid.matches(vol.grid, atol=1e-6)
    # constant images stay constant through linear resampling both ways
    const = vol.replace(array=np.full(vol.array.shape, 7.0, np.float32))
    round_trip = invert(Resample(shape=shape)(const), Resample(shape=shape)(const).history)
    assert np.allclose(np.asarray(round_trip.numpy()), 7.0, atol=1e-4)


@given(vol=volumes(), box_start=st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)))
def test_crop_outside_the_volume_is_an_error_not_a_crash(vol: Volume, box_start) -> None:
    box = tuple((s, s + 3) for s in box_start)
    try:
        out = Crop(box=box)(vol)
    except MedsegError:
        assert any(b[1] > n for b, n in zip(box, vol.spatial_shape))
        return
    assert out.spatial_shape == (3, 3, 3)
    assert invert(out, out.history).grid.matches(vol.grid, atol=1e-6)


@given(vol=volumes(), axcodes=st.sampled_from(AXCODES))
def test_invert_refuses_a_prediction_on_another_grid(vol: Volume, axcodes: str) -> None:
    prep = Pad(min_shape=16)(Reorient(axcodes)(vol))
    wrong = Volume(np.zeros((1, 5, 5, 5), np.uint8), prep.affine, kind="label")
    try:
        invert(wrong, prep.history)
    except MedsegError as exc:
        assert "shape" in str(exc)
        return
    raise AssertionError("a prediction of the wrong shape was inverted")
