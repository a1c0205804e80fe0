"""Per-case quality control: which predicted masks to trust (see ``docs/qc.md``).

Signals are by-products of prediction on the network grid (:mod:`medseg.qc.measure`), compared with
the training summary a model carries (:mod:`medseg.qc.summary`) and combined into one score per
case with its reasons (:mod:`medseg.qc.score`).
"""

from __future__ import annotations

from medseg.qc.measure import grid_measurements, input_description, prediction_measurements
from medseg.qc.score import Assessment, Signal, assess
from medseg.qc.summary import case_summary, training_summary

__all__ = [
    "Assessment",
    "Signal",
    "assess",
    "case_summary",
    "grid_measurements",
    "input_description",
    "prediction_measurements",
    "training_summary",
]
