"""nnU-Net's planning rules against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.planning import rules


def test_target_spacing_isotropic_is_the_median() -> None:
    spacings = np.array([[1.0, 1.0, 1.0], [0.8, 0.8, 0.8], [1.2, 1.2, 1.2]])
    target, numbers = rules.target_spacing(spacings, np.full((3, 3), 100.0))
    assert target.tolist() == [1.0, 1.0, 1.0]
    assert numbers["anisotropic"] is False


def test_target_spacing_anisotropic_uses_the_tenth_percentile() -> None:
    # median z 5 mm > 3 × 0.8 and 40 × 3 < 512 voxels: z becomes p10 of [5, 6, 4] = 4 + 0.2 × 1 = 4.2
    spacings = np.array([[0.8, 0.8, 5.0], [0.7, 0.7, 6.0], [0.9, 0.9, 4.0]])
    shapes = np.array([[512, 512, 40]] * 3, dtype=float)
    target, numbers = rules.target_spacing(spacings, shapes)
    assert target == pytest.approx([0.8, 0.8, 4.2])
    assert numbers["anisotropic"] is True and numbers["coarsest_axis"] == 2


def test_target_spacing_anisotropic_spacing_without_few_voxels_keeps_the_median() -> None:
    spacings = np.array([[0.8, 0.8, 5.0], [0.7, 0.7, 6.0], [0.9, 0.9, 4.0]])
    shapes = np.array([[100, 100, 80]] * 3, dtype=float)  # 80 × 3 > 100: not few voxels along z
    target, _ = rules.target_spacing(spacings, shapes)
    assert target == pytest.approx([0.8, 0.8, 5.0])


def test_target_spacing_never_finer_than_the_other_axes() -> None:
    # median z 8 > 3 × 2; p10 of [0.5, 0.5, 8, 8, 8] = 0.5 < 2 mm → 2 mm + 1e-5
    spacings = np.array([[2.0, 2.0, 0.5], [2.0, 2.0, 0.5], [2.0, 2.0, 8.0], [2.0, 2.0, 8.0], [2.0, 2.0, 8.0]])
    shapes = np.array([[100, 100, 10]] * 5, dtype=float)
    target, _ = rules.target_spacing(spacings, shapes)
    assert target == pytest.approx([2.0, 2.0, 2.0 + 1e-5])


def test_target_spacing_mixed_dataset() -> None:
    # two isotropic cases and one thick-slice case: the median is isotropic, no anisotropy rule
    spacings = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.7, 0.7, 5.0]])
    shapes = np.array([[200, 200, 200], [200, 200, 200], [300, 300, 40]], dtype=float)
    target, numbers = rules.target_spacing(spacings, shapes)
    assert target.tolist() == [1.0, 1.0, 1.0] and numbers["anisotropic"] is False


def test_topology_isotropic() -> None:
    top = rules.pool_and_conv_props([1.0, 1.0, 1.0], [128, 128, 128])
    # 128 → 64 → 32 → 16 → 8 → 4: five poolings per axis while the map keeps ≥ 8 voxels
    assert top.pools == (5, 5, 5) and top.divisor == (32, 32, 32) and top.patch == (128, 128, 128)
    assert top.strides == ((1, 1, 1), *([(2, 2, 2)] * 5))
    assert top.kernel_sizes == tuple([(3, 3, 3)] * 6)


def test_topology_anisotropic_hand_traced() -> None:
    # spacing 0.5 × 0.5 × 3 mm: z is pooled only once x/y reach 2 mm, its kernel is 1 until then
    top = rules.pool_and_conv_props([0.5, 0.5, 3.0], [256, 256, 20])
    assert top.strides == (
        (1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1),
    )  # fmt: skip
    assert top.kernel_sizes == (
        (3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3),
    )  # fmt: skip
    assert top.pools == (6, 6, 2) and top.divisor == (64, 64, 4) and top.patch == (256, 256, 20)


def test_patch_padded_to_the_divisor() -> None:
    assert rules.pad_shape((50, 33), (16, 8)) == (64, 40)
    assert rules.pad_shape((64, 40), (16, 8)) == (64, 40)
    top = rules.pool_and_conv_props([1.0, 1.0, 1.0], [50, 60, 70])
    assert all(p % d == 0 for p, d in zip(top.patch, top.divisor))
    # x: 50 → 25 → 13 → 7 (3 pools, ÷8); y: 60 → 30 → 15 → 8 → 4 and z: 70 → … → 5 (4 pools, ÷16)
    assert top.divisor == (8, 16, 16) and top.patch == (56, 64, 80)


def test_initial_patch_follows_one_over_spacing_capped_at_the_median_shape() -> None:
    # 1/spacing = (1, 1, 0.25) scaled to 256³ voxels: 256·4^(1/3) = 406 in-plane, 102 along z
    start = rules.initial_patch([1.0, 1.0, 4.0], [1000, 1000, 1000])
    assert start.tolist() == [406, 406, 102]
    assert rules.initial_patch([1.0, 1.0, 4.0], [300, 200, 50]).tolist() == [300, 200, 50]


def test_shrink_sequence_reduces_the_axis_largest_relative_to_the_median() -> None:
    seq = list(rules.shrink_sequence([1.0, 1.0, 1.0], [100, 64, 64]))
    assert seq[0].patch == (112, 64, 64)  # 100 padded to 4 pools (÷16)
    assert seq[1].patch == (96, 64, 64)  # x has the largest patch/median ratio (1.12) and loses 16 voxels
    ties = list(rules.shrink_sequence([1.0, 1.0, 1.0], [128, 64, 64]))
    # equal ratios: nnU-Net's argsort picks the last axis; z 64 − 16 = 48 has 3 pools, so it loses only 8
    assert ties[1].patch == (128, 64, 56)
    volumes = [int(np.prod(t.patch)) for t in seq]
    assert volumes == sorted(volumes, reverse=True) and all(p % d == 0 for t in seq for p, d in zip(t.patch, t.divisor))


def test_feature_map_size_hand_computed() -> None:
    top = rules.Topology(((1, 1), (2, 2)), ((3, 3), (3, 3)), (8, 8), (2, 2), (1, 1))
    # encoder 2·4·64 + 2·8·16; decoder convs 2·4·64 + transposed conv 4·64; head 2·64
    assert rules.feature_map_size(top, (4, 8), n_classes=2) == 512 + 256 + 512 + 256 + 128


def test_batch_rules() -> None:
    assert rules.dataset_batch_cap(10 * 64**3, (64, 64, 64)) == 0  # 5 % of 10 cases: below one patch
    assert rules.dataset_batch_cap(1000 * 64**3, (64, 64, 64)) == 50
    assert rules.nnunet_memory_fits(560_000_000, 3, 8.0) and not rules.nnunet_memory_fits(560_000_001, 3, 8.0)
    assert rules.nnunet_batch_size(280_000_000, 3, 8.0) == 4


def test_normalisation_scheme_names() -> None:
    assert rules.normalisation_scheme("CT") == "ct"
    assert rules.normalisation_scheme("T2") == "zscore"
    assert rules.normalisation_scheme("noNorm") == "nonorm"


def test_nnunet_axes_coarsest_first_ties_to_z() -> None:
    assert rules.nnunet_axes([1.0, 1.0, 1.0]) == [2, 1, 0]
    assert rules.nnunet_axes([0.7, 0.7, 5.0]) == [2, 1, 0]
    assert rules.nnunet_axes([4.0, 1.0, 1.0]) == [0, 2, 1]


def test_small_structure_spacing_refines_until_the_object_spans_three_voxels() -> None:
    spacings = np.array([[1.2, 1.2, 2.0], [2.0, 2.0, 3.0]])
    target = np.array([1.51, 1.51, 2.39])
    refined, n = rules.small_structure_spacing(target, spacings, {"liver": 4e5, "lesion": 34.0})
    diameter = (6 * 34.0 / np.pi) ** (1 / 3)
    assert n["label"] == "lesion" and n["changed"]
    assert refined[:2] == pytest.approx([diameter / 3] * 2)  # 3 voxels across in-plane
    assert refined[2] == pytest.approx(2.0) and n["limited_by"] == "floor"  # no slice finer than the data's finest


def test_small_structure_spacing_keeps_nnunet_where_nothing_is_lost_and_caps_the_growth() -> None:
    target = np.array([1.0, 1.0, 1.0])
    kept, n = rules.small_structure_spacing(target, np.array([[0.5, 0.5, 0.5]]), {"organ": 1000.0})
    assert np.array_equal(kept, target) and not n["changed"]
    capped, n = rules.small_structure_spacing(target, np.array([[0.1, 0.1, 0.1]]), {"speck": 0.01})
    assert np.prod(target / capped) == pytest.approx(rules.MAX_VOXEL_GROWTH, rel=1e-6)
    assert n["limited_by"] == "growth"
    assert rules.small_structure_spacing(target, np.array([[0.5] * 3]), {})[1] == {"changed": False}


def test_small_structure_spacing_on_thick_slices_no_case_undercuts_says_so() -> None:
    """All cases have 2.5 mm slices: the lesion stays < 3 voxels along z, reported as limited by the data."""
    target = np.array([1.5, 1.5, 2.5])
    kept, n = rules.small_structure_spacing(target, np.array([[1.5, 1.5, 2.5]] * 3), {"lesion": 158.0})
    assert np.array_equal(kept, target) and not n["changed"] and n["limited_by"] == "floor"
