"""Assemble the planned pipeline (a mapping of the pipeline-file sections) and the reasons of its values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.planning import rules
from medseg.planning.decisions import Decision, fmt, fmt_seconds

if TYPE_CHECKING:
    from medseg.planning.fingerprint import Fingerprint
    from medseg.planning.planner import Configuration, PlanOptions

#: Channel names that mean MR to ``input.modality`` (checked against DICOM Modality at prediction).
_MR_NAMES = {"mr", "mri", "t1", "t2", "flair", "t1w", "t2w", "t1c", "t1ce", "pd", "adc", "dwi", "swi"}
#: A predicted component smaller than this share of the smallest labelled one is removed.
MIN_COMPONENT_SHARE = 0.5


def propose_postprocess(fp: Fingerprint) -> tuple[list[dict[str, Any]], list[Decision]]:
    """Post-processing candidates from the label statistics of the training cases.

    - keep-largest-component for the labels that are one component in every case holding them;
    - for the others, remove predicted components under half the smallest labelled component;
    - fill holes of the labels that have no enclosed hole in any training case.

    ``medseg train --folds all`` then keeps only the steps that raise the cross-validated Dice.
    """
    steps: list[dict[str, Any]] = []
    decisions: list[Decision] = []
    present = {k: fp.label_stats(k) for k in fp.labels if fp.label_stats(k)["cases_present"] > 0}
    single = [k for k, s in present.items() if s["single_component"]]
    if single:
        steps.append({"keep_largest_component": {"per_label": True, "connectivity": 26, "labels": single}})
        decisions.append(
            Decision(
                f"postprocess[{len(steps) - 1}]",
                single,
                "keep the largest component only for labels that are one component in every training case",
                "; ".join(f"{present[k]['name']}: 1 component in {present[k]['cases_present']} cases" for k in single),
                "medseg",
            )
        )
    for k, s in present.items():
        if k in single:
            continue
        size = round(MIN_COMPONENT_SHARE * s["smallest_component_mm3"], 3)
        steps.append({"remove_small_components": {"min_size_mm3": size, "per_label": True, "labels": [k]}})
        decisions.append(
            Decision(
                f"postprocess[{len(steps) - 1}]",
                size,
                f"{s['name']} has several components: remove predicted ones under half the smallest labelled one",
                f"up to {s['components_max']} components per case; smallest {fmt(s['smallest_component_mm3'])} mm³",
                "medseg",
            )
        )
    no_holes = [k for k, s in present.items() if s["hole_voxels"] == 0]
    if no_holes:
        steps.append({"fill_holes": {"mode": "3d", "labels": no_holes}})
        decisions.append(
            Decision(
                f"postprocess[{len(steps) - 1}]",
                no_holes,
                "fill enclosed holes of labels that have none in any training case",
                "no hole voxels in the training labels of " + ", ".join(present[k]["name"] for k in no_holes),
                "medseg",
            )
        )
    if not steps:
        decisions.append(Decision("postprocess", [], "no candidate step fits the label statistics", "", "medseg"))
    return steps, decisions


def _input_modality(modalities: list[tuple[str, str]]) -> str:
    schemes = {rules.normalisation_scheme(m) for m, _ in modalities}
    if schemes == {"ct"}:
        return "CT"
    names = {m.casefold() for m, _ in modalities}
    return "MR" if names <= _MR_NAMES else "any"


#: The training recipe every plan writes (nnU-Net's trainer); the probes time their step with exactly these.
PLANNED_TRAINING: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.01,
    "schedule": "poly",
    "loss": "dice_ce",
    "foreground_ratio": 0.33,
    "class_balanced": True,
}


def _sampling(fp: Fingerprint) -> Decision:
    """nnU-Net's foreground sampling: the class first, uniformly among those a case has, then one of its voxels.

    Drawn in proportion to voxels instead, a small structure is almost never a patch's centre; the numbers say
    how rarely (median voxel fraction of each label in its cases).
    """
    fractions = {name: float(fp.label_stats(value).get("median_fraction") or 0.0) for value, name in fp.labels.items()}
    total = sum(fractions.values())
    shares = "; ".join(f"{name} {100 * f / total:.2g} %" for name, f in fractions.items()) if total else "no labels"
    return Decision(
        "training.class_balanced",
        True,
        "foreground patches are centred on a class drawn uniformly among those the case has, then on one of its "
        "voxels (nnU-Net's data loader), so every label is drawn as often as the largest",
        f"drawn by voxels instead, the share of foreground patches centred on each label would be: {shares}",
    )


def _training(conf: Configuration, options: PlanOptions) -> tuple[dict[str, Any], list[Decision]]:
    s = conf.schedule
    training: dict[str, Any] = {
        "patch_size": conf.patch,
        "batch_size": conf.batch,
        "max_epochs": s.max_epochs,
        "iterations_per_epoch": s.iterations_per_epoch,
        "val_every": s.val_every,
        **PLANNED_TRAINING,
        "device": options.device,
    }
    budget = options.time_budget_s
    decisions = [
        Decision(
            "training.max_epochs",
            s.max_epochs,
            (
                f"epochs × iterations sized so the learning-rate schedule ends within --time-budget {fmt_seconds(budget)}"
                if budget is not None
                else "nnU-Net's schedule: 1000 epochs of 250 iterations"
            ),
            f"{s.max_epochs} × {s.iterations_per_epoch} = {s.iterations} iterations; {s.numbers}",
            "medseg" if budget is not None else "nnU-Net",
        ),
        Decision(
            "training.val_every",
            s.val_every,
            "sliding-window validation spaced to cost ≤ 10 % of the budget"
            if budget is not None
            else "validate every 50 epochs (20 validations over 1000 epochs)",
            f"{s.max_epochs} epochs",
            "medseg",
        ),
        Decision(
            "training.optimizer",
            "sgd",
            "nnU-Net's trainer: SGD (Nesterov, momentum 0.99), lr 0.01, poly decay, Dice + cross-entropy with deep "
            "supervision, a third of each batch centred on foreground",
            "",
        ),
        Decision("training.device", options.device, "--device (probed there)", "", "medseg"),
    ]
    if s.max_time_s is not None:
        training["max_time_s"] = round(s.max_time_s, 1)
        decisions.append(
            Decision(
                "training.max_time_s",
                training["max_time_s"],
                "the training time: the run trains until it is used (the epochs above size its log and validations) "
                "and the learning-rate schedule is spread over it, so a slower or faster machine still fits the budget",
                f"--time-budget {fmt_seconds(budget or 0.0)} − {fmt_seconds((budget or 0.0) - s.max_time_s)} of "
                "measured pre-processing",
                "medseg",
            )
        )
    return training, decisions


def assemble(
    fp: Fingerprint,
    conf: Configuration,
    target: np.ndarray,
    preprocess_head: list[dict[str, Any]],
    modalities: list[tuple[str, str]],
    options: PlanOptions,
    decisions: list[Decision],
) -> dict[str, Any]:
    """The pipeline mapping for ``conf``; appends the decisions of every section to ``decisions``.

    ``target`` is the RAS target spacing (for reference); ``conf.spacing`` is in the
    pipeline's axis order after ``reorient`` to ``conf.axcodes``.
    """
    dims = len(conf.patch)
    preprocess = [dict(step) for step in preprocess_head]
    preprocess[0] = {"reorient": {"axcodes": conf.axcodes}}
    preprocess.append(rules.resample_step(conf.spacing))
    decisions.insert(
        0,
        Decision(
            "preprocess.reorient",
            conf.axcodes,
            "reorient to RAS first, so spacing and patch axes mean the same for every case"
            + ("" if conf.axcodes == "RAS" else "; 2D slices run along the last axis, the coarsest")
            + " (nnU-Net plans on the files' voxel order)",
            ", ".join(f"{k}: {len(v)} cases" for k, v in fp.flags["mixed_orientations"].items()) or "",
            "medseg",
        ),
    )
    decisions.append(
        Decision(
            "preprocess.resample.mode",
            "cubic",
            "intensities cubic B-spline, labels linear on one-hot, nearest across a > 3× anisotropic axis "
            "(nnU-Net resample_data_or_seg: order 3, seg order 1, order_z 0)",
            "",
        )
    )
    network = {"name": "unet", "options": conf.network.options()}
    decisions.append(
        Decision(
            "network.options.downsampling",
            "strided_conv",
            "nnU-Net's PlainConvUNet: strided convolutions, 2 convs per stage, instance norm, leaky ReLU, deep supervision",
            "",
        )
    )
    decisions.extend(conf.decisions)
    training, train_decisions = _training(conf, options)
    decisions.extend([*train_decisions, _sampling(fp)])
    mirror = list(range(dims))
    inference = {
        "patch_size": conf.patch,
        "overlap": 0.5,
        "blend": "gaussian",
        "batch_size": 4,
        "mirror_axes": mirror,
        "device": options.device,
    }
    decisions.append(
        Decision(
            "inference.patch_size",
            conf.patch,
            "the training patch, half-window overlap, Gaussian blending, mirroring along every axis "
            "(nnU-Net predict_sliding_window_return_logits defaults)",
            f"mirroring costs {2**dims}× the windows; {conf.case_text}"
            if conf.case_text
            else f"mirroring costs {2**dims}× the windows",
        )
    )
    postprocess, pp_decisions = propose_postprocess(fp)
    decisions.extend(pp_decisions)
    decisions.append(Decision("export", "nifti", "a NIfTI label map on each input's original grid", "", "medseg"))
    source = fp.data.get("source") or "dataset"
    name = f"{str(source).rstrip('/').split('/')[-1]}-{conf.name}"
    flags = [f"{k}: {v}" for k, v in fp.flags.items() if v]
    return {
        "name": name,
        "description": f"Planned by medseg plan from {fp.n_cases} cases of {source}"
        + (f"; dataset flags: {'; '.join(flags)}" if flags else ""),
        "input": {
            "modality": _input_modality(modalities),
            "channels": fp.channels,
            # RTSTRUCT/SEG exports: the ROI names of each label, so training matches them as planning did
            "labels": {k: fp.label_synonyms.get(k) or name for k, name in sorted(fp.labels.items())},
        },
        "preprocess": preprocess,
        "network": network,
        "training": training,
        "inference": inference,
        "postprocess": postprocess,
        "export": [{"nifti": {}}],
    }
