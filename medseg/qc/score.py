"""One QC score per case from its signals, with the reasons (see ``docs/qc.md``).

Each signal becomes a score ``s`` in [0, 1] (0: like the training cases; 1: certainly off) and is
evidence of one of two kinds: ``mask`` (the mask itself looks wrong: implausible volume or
components, empty or full, uncertain, passes or folds disagreeing) or ``input`` (the input is unlike
the training cases or cut by the field of view: the mask may still be right). Per kind the signals
combine as ``1 − Π(1 − s_i)`` (one certain signal is enough, weak ones add up) into ``M`` and ``A``;
the case's

    qc_score = M + (1 − M) · INPUT_WEIGHT · A

so a case with only input evidence reaches at most ``INPUT_WEIGHT`` (0.5, the default review
threshold: it is still flagged) and ranks below a case whose mask shows it failed. Signals compared
with the training summary use ``s = clip((|z| − 2) / 4, 0, 1)``: up to two standard deviations is
normal, six or more is certain. Every signal with ``s > 0`` gives a human-readable flag; nothing is
hidden.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Evidence = Literal["mask", "input"]

#: |z| below this scores 0 ...
Z_NORMAL = 2.0
#: ... and this many more standard deviations score 1.
Z_SPAN = 4.0
#: Floor of the intensity spread, as a fraction of the training cases' foreground std: with few training
#: cases the spread between cases is not known (one case: 0), and a shift of the foreground's percentiles
#: by a quarter of its own spread counts as one standard deviation.
INTENSITY_SPREAD_FLOOR = 0.25
#: Floor of the volume spread, as a fraction of the training mean volume (10 %).
VOLUME_SPREAD_FLOOR = 0.10
#: Floor of the component-count spread: at least one component, and at least half the training mean (the raw
#: argmax on the network grid has specks that post-processing removes; their number varies between cases).
COMPONENT_SPREAD_FLOOR = 1.0
COMPONENT_SPREAD_FRACTION = 0.5
#: Border: the share of a label's voxels on the outermost layer above the training maximum that scores 1.
BORDER_SPAN = 0.02
#: Spacing: outside the training range by this factor scores 0 ... (1.5×) and by twice that scores 1 (3×).
SPACING_FACTOR = 1.5
#: Uncertainty: mean normalised entropy inside a label that scores 0, and the span up to a score of 1.
ENTROPY_NORMAL = 0.15
ENTROPY_SPAN = 0.35
#: A prediction covering at least this share of the grid is "full".
FULL_FRACTION = 0.98
#: The weight of input evidence in ``qc_score``: a case with only input evidence scores at most this (the
#: default ``--qc-threshold``), so it is flagged but ranks below evidence that the mask failed.
INPUT_WEIGHT = 0.5
#: With a calibration, a case whose mean predicted Dice is this has mask evidence 0.5 (the default review
#: threshold); the bound the benchmark calls failed (Dice < 0.7).
REVIEW_DICE = 0.7
#: Expected Dice of the probabilities (``soft_dice``) that scores 0, and the span down to a score of 1.
SOFT_DICE_NORMAL = 0.9
SOFT_DICE_SPAN = 0.3
#: Mean normalised entropy at the predicted border that scores 0, and the span up to a score of 1.
BORDER_ENTROPY_NORMAL = 0.7
BORDER_ENTROPY_SPAN = 0.25
#: Dice between mirrored passes or folds that scores 0, and the span down to a score of 1.
AGREEMENT_NORMAL = 0.95
AGREEMENT_SPAN = 0.25


@dataclass
class Signal:
    """One QC signal of a case: what was measured, against what, and its score in [0, 1]."""

    name: str
    score: float
    flag: str = ""
    value: float | None = None
    reference: str = ""
    z: float | None = None
    evidence: Evidence = "mask"
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "score": round(self.score, 4), "evidence": self.evidence}
        for key in ("value", "z"):
            val = getattr(self, key)
            if val is not None and math.isfinite(val):
                out[key] = round(float(val), 4)
        if self.reference:
            out["reference"] = self.reference
        if self.flag:
            out["flag"] = self.flag
        return out


@dataclass
class Assessment:
    """The QC record of a case.

    Attributes:
        score: ``M + (1 − M) · INPUT_WEIGHT · A`` (see the module docstring), in [0, 1].
        signals: every signal computed, flagged or not.
        notes: what could not be checked (e.g. a model without a training summary).
        calibration: the model's out-of-fold calibration (:mod:`medseg.qc.calibration`), when it has one.
        expected_dice: per label value, the probabilities' own expected Dice (``soft_dice``), for the calibration.
    """

    signals: list[Signal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    expected_dice: dict[str, float] = field(default_factory=dict)

    def evidence(self, kind: Evidence, label: str | None = None) -> float:
        """``1 − Π(1 − s_i)`` over the signals of ``kind`` (with ``label``: only those of that label value and
        those of no label)."""
        keep = 1.0
        for s in self.signals:
            if s.evidence == kind and (label is None or s.label in (None, label)):
                keep *= 1.0 - min(max(s.score, 0.0), 1.0)
        return 1.0 - keep

    def calibrated_labels(self) -> list[str]:
        """Label values the calibration predicts a Dice for from the features (empty without one)."""
        return sorted((v for v, f in (self.calibration.get("labels") or {}).items() if "ratio" in f), key=int)

    def mask_evidence(self) -> float:
        """``M``: without a calibration ``1 − Π(1 − s_i)`` over the mask evidence; with one, it follows the
        predicted Dice: ``M = 1 − (1 − clip((1 − D̂) / (2 (1 − REVIEW_DICE)), 0, 1)) · Π(1 − s_j)``, ``D̂`` the
        mean predicted Dice over the calibrated labels (0.5 at ``REVIEW_DICE``, 1 at half of it), ``j`` the
        mask evidence of labels the calibration does not cover (their signals are not in ``D̂``)."""
        fits = self.calibrated_labels()
        if not fits:
            return self.evidence("mask")
        predicted = self.predicted_dice
        d = sum(predicted.get(v, 0.0) for v in fits) / len(fits)
        keep = 1.0 - min(max((1.0 - d) / (2.0 * (1.0 - REVIEW_DICE)), 0.0), 1.0)
        for s in self.signals:
            if s.evidence == "mask" and s.label is not None and s.label not in fits:
                keep *= 1.0 - min(max(s.score, 0.0), 1.0)
        return 1.0 - keep

    @property
    def score(self) -> float:
        m = self.mask_evidence()
        return m + (1.0 - m) * INPUT_WEIGHT * self.evidence("input")

    @property
    def flags(self) -> list[str]:
        """The flags of the signals that scored, the strongest first (mask evidence before input evidence)."""
        ranked = sorted(self.signals, key=lambda s: (-s.score, s.evidence != "mask"))
        return [s.flag for s in ranked if s.score > 0 and s.flag]

    def features(self) -> dict[str, float]:
        """Per label value, the calibration's feature ``soft_dice · (1 − M_label)`` in [0, 1] (see
        :mod:`medseg.qc.calibration`): the probabilities' own expected Dice, discounted by the evidence that
        the label's mask failed."""
        return {v: d * (1.0 - self.evidence("mask", v)) for v, d in self.expected_dice.items()}

    @property
    def predicted_dice(self) -> dict[str, float]:
        """Per label value, the Dice the calibration predicts (empty without a calibration)."""
        from medseg.qc.calibration import predicted_dice

        if not self.calibration:
            return {}
        m = self.evidence("mask")  # only calibrations of the older kind (``qc_score``) read the score
        return predicted_dice(self.calibration, m + (1.0 - m) * INPUT_WEIGHT * self.evidence("input"), self.features())

    def to_dict(self) -> dict[str, Any]:
        return {
            "qc_score": round(self.score, 4),
            "qc_mask_evidence": round(self.mask_evidence(), 4),
            "qc_input_evidence": round(self.evidence("input"), 4),
            "qc_predicted_dice": {k: round(v, 4) for k, v in self.predicted_dice.items()},
            "qc_flags": self.flags,
            "notes": list(self.notes),
            "signals": [s.to_dict() for s in self.signals],
        }


def z_score_signal(z: float) -> float:
    """``clip((|z| − 2) / 4, 0, 1)``."""
    return min(max((abs(z) - Z_NORMAL) / Z_SPAN, 0.0), 1.0)


def _z(value: float, mean: float, spread: float) -> float:
    return (value - mean) / spread if spread > 0 else (0.0 if value == mean else math.inf)


def _g(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def assess(
    measured: Mapping[str, Any],
    source: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
    *,
    labels: Mapping[int, str],
    channels: list[str],
    reference: Mapping[str, Any] | None = None,
) -> Assessment:
    """Score a prediction against the model's training summary.

    Args:
        measured: :func:`medseg.qc.measure.prediction_measurements` of the case.
        source: :func:`medseg.qc.measure.input_description` of the input as read.
        summary: the model's :func:`medseg.qc.summary.training_summary` (None or ``{}``: the training
            comparisons are skipped and a note says so).
        labels: label value → name (background excluded), for the flags.
        channels: channel names, for the flags.
        reference: the model's out-of-fold reference (:func:`medseg.qc.reference.build_reference`); default:
            the one the summary's calibration carries (none: fixed thresholds).
    """
    summary = summary or {}
    out = Assessment(calibration=dict(summary.get("calibration") or {}))
    if reference is None:
        reference = out.calibration.get("reference") or {}
    if not summary.get("n_cases"):
        out.notes.append(
            "the model carries no training summary (trained before medseg recorded one): input intensity, spacing "
            "and label volumes are not compared with the training cases"
        )
    else:
        _input_signals(out, measured, source, summary, channels)
    _label_signals(out, measured, summary, labels)
    _uncertainty_signals(out, measured, labels, reference)
    return out


def _input_signals(
    out: Assessment,
    measured: Mapping[str, Any],
    source: Mapping[str, Any],
    summary: Mapping[str, Any],
    channels: list[str],
) -> None:
    lo, hi = summary["spacing"]["min"], summary["spacing"]["max"]
    spacing = source["spacing"]
    factor = (
        max(max(got / high, low / got) for got, low, high in zip(spacing, lo, hi)) if len(spacing) == len(lo) else 1.0
    )
    s = min(max((factor - SPACING_FACTOR) / SPACING_FACTOR, 0.0), 1.0)
    rng = " × ".join(f"{a:g}–{b:g}" if a != b else f"{a:g}" for a, b in zip(lo, hi))
    out.signals.append(
        Signal(
            "spacing",
            s,
            f"spacing {' × '.join(f'{x:.3g}' for x in spacing)} mm vs training {rng} mm ({factor:.1f}× outside)",
            factor,
            f"{rng} mm",
            evidence="input",
        )
    )
    modalities = summary.get("modalities") or []
    if source.get("modality") and modalities and source["modality"] not in modalities:
        out.signals.append(
            Signal(
                "modality", 1.0, f"modality {source['modality']} vs training {', '.join(modalities)}", evidence="input"
            )
        )
    for ch, (got, ref) in enumerate(zip(measured["channels"], summary.get("intensity") or [])):
        if not ref or got.get("n", 0) == 0:
            continue
        floor = INTENSITY_SPREAD_FLOOR * ref["std"]["mean"]
        compared = [
            (_z(got[key], ref[key]["mean"], max(ref[key]["std"], floor)), short, got[key], ref[key]["mean"],
             max(ref[key]["std"], floor))
            for key, short in (("percentile_00_5", "p0.5"), ("median", "p50"), ("percentile_99_5", "p99.5"))
        ]  # fmt: skip
        z, short, value, mean, spread = max(compared, key=lambda c: abs(c[0]))
        name = channels[ch] if ch < len(channels) else f"channel {ch}"
        out.signals.append(
            Signal(
                f"intensity.{name}",
                z_score_signal(z),
                f"{name} foreground intensity {short} {_g(value)} vs training {_g(mean)}±{_g(spread)} (z {z:.1f}; "
                "after pre-processing: another contrast, modality or a rescale error?)",
                value,
                f"{_g(mean)}±{_g(spread)}",
                z,
                evidence="input",
            )
        )


def _label_signals(
    out: Assessment, measured: Mapping[str, Any], summary: Mapping[str, Any], labels: Mapping[int, str]
) -> None:
    got_labels = measured["labels"]
    ref_labels = summary.get("labels") or {}
    n_cases = int(summary.get("n_cases") or 0)
    if measured["foreground_fraction"] >= FULL_FRACTION:
        out.signals.append(
            Signal("full", 1.0, f"the prediction covers {100 * measured['foreground_fraction']:.0f} % of the image")
        )
    if not got_labels and not ref_labels:
        out.signals.append(Signal("empty", 1.0, "no label was predicted anywhere"))
    for value, name in sorted(labels.items()):
        got, ref = got_labels.get(str(value)), ref_labels.get(str(value))
        if got is None:
            if ref is not None and ref["present"] >= 0.9 * n_cases:
                out.signals.append(
                    Signal(
                        f"empty.{name}",
                        1.0,
                        f"{name} is empty (present in {ref['present']} of {n_cases} training cases)",
                        label=str(value),
                    )
                )
            continue
        border_ref = ref["border_fraction"]["max"] if ref else 0.0
        b = got["border_fraction"]
        border = Signal(
            f"border.{name}",
            min(max((b - border_ref) / BORDER_SPAN, 0.0), 1.0),
            f"{name} touches the field-of-view border: {100 * b:.1f} % of its voxels in the outermost layer "
            f"(training at most {100 * border_ref:.1f} %; truncated field of view?)",
            b,
            f"≤ {border_ref:.4f}",
            evidence="input",
            label=str(value),
        )
        out.signals.append(border)
        if ref is None:
            continue
        vol = ref["volume_ml"]
        spread = max(vol["std"], VOLUME_SPREAD_FLOOR * vol["mean"])
        volume = _z_signal(
            f"volume.{name}", got["volume_ml"], vol["mean"], spread,
            f"{name} volume {_g(got['volume_ml'])} mL vs training {_g(vol['mean'])}±{_g(spread)} mL",
            "; raw prediction on the network grid", f"{vol['mean']:.4g}±{spread:.4g} mL",
        )  # fmt: skip
        volume.label = str(value)
        if border.score > 0 and got["volume_ml"] < vol["mean"]:  # a cut organ is small: the cut explains it
            volume.evidence = "input"
            volume.flag += ", cut by the field of view"
        out.signals.append(volume)
        comp = ref["components"]
        spread = max(comp["std"], COMPONENT_SPREAD_FLOOR, COMPONENT_SPREAD_FRACTION * comp["mean"])
        out.signals.append(
            _z_signal(
                f"components.{name}", got["components"], comp["mean"], spread,
                f"{name} has {got['components']} connected components vs training {comp['mean']:.3g}±{spread:.3g}",
                "", f"{comp['mean']:.3g}±{spread:.3g}", label=str(value),
            )
        )  # fmt: skip


def _z_signal(
    key: str, value: float, mean: float, spread: float, text: str, note: str, expected: str, label: str | None = None
) -> Signal:
    """A signal (mask evidence) scored from ``value``'s z-score against the training ``mean`` ± ``spread``."""
    z = _z(value, mean, spread)
    return Signal(key, z_score_signal(z), f"{text} (z {z:.1f}{note})", value, expected, z, label=label)


def _ramp(value: float, normal: float, span: float) -> float:
    """0 at ``normal``, 1 at ``normal + span`` (a negative span: values below ``normal`` score), clipped."""
    return min(max((value - normal) / span, 0.0), 1.0)


def _uncertainty_signals(
    out: Assessment, measured: Mapping[str, Any], labels: Mapping[int, str], reference: Mapping[str, Any]
) -> None:
    """Entropy, border entropy, expected Dice and pass/fold agreement per label: against the model's out-of-fold
    ``reference`` (:mod:`medseg.qc.reference`) where it has the label, else against fixed thresholds."""
    from medseg.qc.reference import label_values

    values = label_values(measured)
    for value, name in sorted(labels.items()):
        key = str(value)
        row = values.get(key)
        if row is None:
            continue
        ref = (reference.get("labels") or {}).get(key) or {}
        if "soft_dice" in row:
            out.expected_dice[key] = row["soft_dice"]
        for measure, (what, normal, span) in FIXED.items():
            if measure in row:
                out.signals.append(_uncertainty_signal(measure, row[measure], ref.get(measure), normal, span,
                                                       f"{name}: {what}", name, key))  # fmt: skip
        _fold_signal(out, measured, key, name, ref.get("dice"))


#: Fixed fallbacks (no out-of-fold reference): measure → (what, value scoring 0, span to a score of 1; a
#: negative span: lower is worse). Set for a confident model (the demo model's held-out Colin27 copy: entropy
#: 0.10); a less confident model crosses them on every case, hence the reference.
FIXED: dict[str, tuple[str, float, float]] = {
    "entropy": ("mean softmax entropy (normalised)", ENTROPY_NORMAL, ENTROPY_SPAN),
    "border_entropy": ("mean softmax entropy at its predicted border (normalised)", BORDER_ENTROPY_NORMAL,
                       BORDER_ENTROPY_SPAN),
    "soft_dice": ("the probabilities expect a Dice of their own mask of", SOFT_DICE_NORMAL, -SOFT_DICE_SPAN),
    "agreement.mirrors": ("the mirrored passes agree with a Dice of", AGREEMENT_NORMAL, -AGREEMENT_SPAN),
}  # fmt: skip
#: Signal names of the measures (``uncertainty``: the expected Dice, for the records' continuity).
SIGNAL_NAMES = {"soft_dice": "uncertainty", "entropy": "entropy", "border_entropy": "border_entropy",
                "agreement.mirrors": "agreement.mirrors"}  # fmt: skip


def _uncertainty_signal(
    measure: str, value: float, stats: Mapping[str, float] | None, normal: float, span: float, text: str,
    name: str, key: str,
) -> Signal:  # fmt: skip
    """One uncertainty signal of label ``key``: against the out-of-fold ``stats`` when given, else the fixed ramp."""
    from medseg.qc.reference import MEASURES, referenced_score, spread

    if stats:
        s, z = referenced_score(value, stats, MEASURES[measure])
        ref = f"{stats['mean']:.3g}±{spread(stats):.2g}"
        flag = f"{text} {value:.2f} vs {ref} on the out-of-fold cases (z {z:+.1f})"
        return Signal(f"{SIGNAL_NAMES[measure]}.{name}", s, flag, value, ref, z, label=key)
    bound = f"{'≥' if span < 0 else '≤'} {normal:g}"
    flag = f"{text} {value:.2f} (a confident model: {bound}; no out-of-fold reference)"
    return Signal(f"{SIGNAL_NAMES[measure]}.{name}", _ramp(value, normal, span), flag, value, bound, label=key)


def _fold_signal(
    out: Assessment, measured: Mapping[str, Any], key: str, name: str, dice: Mapping[str, float] | None
) -> None:
    """Disagreement between the folds of an ensemble for label ``key``: below the Dice the out-of-fold Dice
    implies (:func:`medseg.qc.reference.fold_floor`) when known, else below ``AGREEMENT_NORMAL``."""
    from medseg.qc.reference import fold_floor

    d = ((measured.get("agreement") or {}).get("folds") or {}).get(key)
    if d is None:
        return
    normal = fold_floor(dice["mean"]) if dice else AGREEMENT_NORMAL
    why = f"implied by the out-of-fold Dice {dice['mean']:.2f}" if dice else "fixed; no out-of-fold reference"
    out.signals.append(
        Signal(
            f"agreement.folds.{name}",
            _ramp(d, normal, -AGREEMENT_SPAN),
            f"{name}: the folds agree with a Dice of {d:.2f} (usually ≥ {normal:.2f}, {why})",
            d,
            f"≥ {normal:.3g}",
            label=key,
        )
    )
