"""Batch runs over many cases: resumable, fault-isolated, with provenance; in-process, overlapped or on Dask.

Typical use::

    from medseg.batch import discover_cases, run_batch

    cases = discover_cases("imagesTs/")               # or a .csv manifest
    report = run_batch(cases, processor, "out/", executor="overlap")
    raise SystemExit(report.exit_code)

``processor`` is any :class:`CaseProcessor` (``fingerprint``, ``load``, ``run``, ``save``).
"""

from __future__ import annotations

from medseg.batch.cases import Case, CaseList, check_case_id, discover_cases, output_path, sanitize_case_id, skip_reason
from medseg.batch.engine import EXECUTORS, Executor, run_batch, select_part
from medseg.batch.fingerprint import case_fingerprint, hash_file, hash_input
from medseg.batch.processor import CaseProcessor
from medseg.batch.provenance import is_done, provenance_path, read_provenance
from medseg.batch.report import BatchReport, CaseResult

__all__ = [
    "EXECUTORS",
    "BatchReport",
    "Case",
    "CaseList",
    "CaseProcessor",
    "CaseResult",
    "Executor",
    "case_fingerprint",
    "check_case_id",
    "discover_cases",
    "hash_file",
    "hash_input",
    "is_done",
    "output_path",
    "provenance_path",
    "read_provenance",
    "run_batch",
    "sanitize_case_id",
    "select_part",
    "skip_reason",
]
