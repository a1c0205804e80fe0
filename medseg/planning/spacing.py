"""The target spacing: nnU-Net's rule, refined where the smallest structure would be lost.

nnU-Net's ``determine_fullres_target_spacing`` takes the per-axis median spacing (the 10th
percentile along a strongly anisotropic axis). On a dataset with small objects (lesions of a few
millimetres beside organs) that spacing can leave the smallest label a voxel or two across, and
the network cannot learn it: in ``benchmarks/RESULTS.md`` the planned pipeline found no ≈ 34 mm³
phantom lesion at nnU-Net's 1.51 × 1.51 × 2.39 mm (Dice 0.000) while a 1.5 mm isotropic
pipeline did. medseg keeps nnU-Net's spacing unless the smallest label's typical object spans
fewer than :data:`~medseg.planning.rules.MIN_OBJECT_VOXELS_ACROSS` voxels along an axis
(:func:`~medseg.planning.rules.small_structure_spacing`), and says so in the decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medseg.planning import rules
from medseg.planning.decisions import Decision, fmt

if TYPE_CHECKING:
    from medseg.planning.fingerprint import Fingerprint

_AXES = "RAS"


def typical_objects_mm3(fp: Fingerprint) -> dict[str, float]:
    """Label name → its typical object's volume, mm³: median label volume / median component count."""
    out = {}
    for value, name in fp.labels.items():
        stats = fp.label_stats(value)
        volume_ml = float(stats.get("median_volume_ml") or 0.0)
        if volume_ml > 0:
            out[name] = 1000.0 * volume_ml / max(float(stats.get("components_median") or 1.0), 1.0)
    return out


def plan_spacing(fp: Fingerprint, protect_small: bool = True) -> tuple[np.ndarray, Decision]:
    """Target spacing (RAS order): nnU-Net's anisotropy rule, then (``protect_small``) the small-structure rule.

    ``protect_small=False`` is nnU-Net's spacing alone (``medseg plan --no-probe`` reproduces nnU-Net's plan).
    """
    target, n = rules.target_spacing(fp.spacings, fp.shapes_after_crop)
    median = fmt(list(n["median_spacing"]))  # type: ignore[arg-type]
    if n["anisotropic"]:
        axis = _AXES[int(n["coarsest_axis"])]  # type: ignore[call-overload]
        rule = "per-axis median; the coarsest axis uses its 10th-percentile spacing (never finer than the others)"
        numbers = (
            f"median {median} mm over {fp.n_cases} cases; axis {axis} is {fmt(n['spacing_ratio'])}× coarser and has "
            f"{fmt(n['voxel_ratio'])}× fewer voxels (> {rules.ANISO_THRESHOLD:g} both): p10 {fmt(n['p10'])} mm"
        )
    else:
        rule = "per-axis median spacing (nnU-Net determine_fullres_target_spacing)"
        numbers = (
            f"median {median} mm over {fp.n_cases} cases; coarsest/finest {fmt(n['spacing_ratio'])}, "
            f"voxel ratio {fmt(n['voxel_ratio'])} (anisotropy rule needs both > {rules.ANISO_THRESHOLD:g})"
        )
    objects = typical_objects_mm3(fp) if protect_small else {}
    refined, small = rules.small_structure_spacing(target, fp.spacings, objects)
    origin = "nnU-Net"
    if small.get("label") is not None:
        across = fmt([round(float(v), 1) for v in small["across_before"]])  # type: ignore[union-attr]
        seen = (
            f"smallest label {small['label']}: typical object {fmt(small['object_mm3'])} mm³ "
            f"(≈ {fmt(small['diameter_mm'])} mm across) spans {across} voxels at {fmt([float(t) for t in target])} mm"
        )
        if small["changed"]:
            after = fmt([round(float(v), 1) for v in small["across_after"]])  # type: ignore[union-attr]
            limit = {
                "floor": "; no axis finer than the finest spacing the data have along it "
                f"({fmt([float(v) for v in small['floor']])} mm)",  # type: ignore[union-attr]
                "growth": f"; at most {rules.MAX_VOXEL_GROWTH:g}× the voxels per case",
            }.get(str(small["limited_by"]), "")
            rule = (
                f"{rule}, then refined until the smallest label's typical object spans ≥ "
                f"{rules.MIN_OBJECT_VOXELS_ACROSS:g} voxels per axis (one convolution kernel; medseg's departure "
                "from nnU-Net)"
            )
            numbers = f"{numbers}; {seen}, {after} at {fmt([float(t) for t in refined])} mm{limit}"
            origin = "medseg"
        elif small["limited_by"] == "floor":
            numbers = (
                f"{numbers}; {seen}: < {rules.MIN_OBJECT_VOXELS_ACROSS:g} along an axis, but no case has a finer "
                "spacing along it: nnU-Net's spacing kept"
            )
        else:
            numbers = f"{numbers}; {seen}: ≥ {rules.MIN_OBJECT_VOXELS_ACROSS:g} per axis, nnU-Net's spacing kept"
    return refined, Decision("preprocess.resample", [round(float(t), 5) for t in refined], rule, numbers, origin)
