"""The run report: one row per case, counts, reasons for failures; CSV, JSON and HTML."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medseg.io import write_text_atomic

Status = Literal["succeeded", "skipped", "failed"]


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case.

    Attributes:
        case_id: the case.
        status: ``succeeded`` (ran now), ``skipped`` (already done with the same fingerprint)
            or ``failed``.
        error: ``"Type: message"`` when failed (MedsegError messages as they are), else ``""``.
        seconds: wall time spent on the case (load + run + save), s.
        outputs: output name → path relative to the output folder.
        warnings: warnings raised while processing the case.
        fingerprint: the case fingerprint (empty when the inputs could not be hashed).
        qc_score: quality control, 0 = looks like the training cases, 1 = certainly needs review
            (None when the processor gives none, or the case failed); see ``docs/qc.md``.
        qc_flags: the reasons behind ``qc_score``, strongest first.
        qc_predicted_dice: label value → the Dice the model's calibration predicts (empty without one).
    """

    case_id: str
    status: Status
    error: str = ""
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    fingerprint: str = ""
    qc_score: float | None = None
    qc_flags: tuple[str, ...] = ()
    qc_predicted_dice: dict[str, float] = field(default_factory=dict)


#: Default ``qc_score`` from which a case is counted as needing review (``--qc-threshold``).
QC_THRESHOLD = 0.5


@dataclass
class BatchReport:
    """What a batch run did; ``rows`` sorted by case id.

    Attributes:
        rows: one :class:`CaseResult` per case of this run (this part, when sharded).
        executor: ``inprocess``, ``overlap`` or ``dask``.
        seconds: wall time of the whole run, s.
        started: ISO 8601 UTC start time.
        part: ``(part_id, num_parts)``.
        skipped_inputs: ``(path, reason)`` of every input file that is not part of a case.
        interrupted: ``"SIGINT"``/``"SIGTERM"`` when a signal stopped the run before every case ran.
        planned: how many cases the run had to do (``rows`` holds fewer when interrupted).
        qc_threshold: ``qc_score`` from which a case needs review (the report's review list marks them).
    """

    rows: list[CaseResult]
    executor: str = "inprocess"
    seconds: float = 0.0
    started: str = ""
    part: tuple[int, int] = (0, 1)
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: str | None = None
    planned: int = 0
    qc_threshold: float = QC_THRESHOLD

    def count(self, status: Status) -> int:
        """How many cases ended with ``status``."""
        return sum(r.status == status for r in self.rows)

    @property
    def succeeded(self) -> int:
        return self.count("succeeded")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def exit_code(self) -> int:
        """0 when no case failed, 1 when some did, 130/143 when SIGINT/SIGTERM stopped the run."""
        from medseg.batch.signals import EXIT_CODES

        if self.interrupted:
            return EXIT_CODES.get(self.interrupted, 130)
        return 1 if self.failed else 0

    def failure_reasons(self) -> dict[str, int]:
        """Failed cases counted by error type (``InputError``, ``out of memory``, ...)."""
        return dict(Counter(r.error.split(":", 1)[0] for r in self.rows if r.status == "failed").most_common())

    @property
    def warned(self) -> list[CaseResult]:
        """The cases that raised warnings (empty or full masks, constant inputs, ...)."""
        return [r for r in self.rows if r.warnings]

    def ranked(self) -> list[CaseResult]:
        """The cases with a ``qc_score``, highest first (ties by case id)."""
        scored = [r for r in self.rows if r.qc_score is not None]
        return sorted(scored, key=lambda r: (-(r.qc_score or 0.0), r.case_id))

    def needs_review(self, threshold: float | None = None) -> list[CaseResult]:
        """The cases whose ``qc_score`` is at least ``threshold`` (default :attr:`qc_threshold`), highest first."""
        t = self.qc_threshold if threshold is None else threshold
        return [r for r in self.ranked() if (r.qc_score or 0.0) >= t]

    def summary(self) -> str:
        """One line, e.g. ``10 cases: 7 succeeded, 2 skipped, 1 failed (InputError: 1), 2 with warnings in 12.3 s``."""
        line = f"{len(self.rows)} cases: {self.succeeded} succeeded, {self.skipped} skipped, {self.failed} failed"
        if self.failed:
            line += " (" + ", ".join(f"{k}: {v}" for k, v in self.failure_reasons().items()) + ")"
        if self.warned:
            line += f", {len(self.warned)} with warnings"
        if self.skipped_inputs:
            line += f", {len(self.skipped_inputs)} input file(s) not read"
        if self.interrupted:
            line += f"; interrupted ({self.interrupted}) after {len(self.rows)} of {self.planned} cases"
        return f"{line} in {self.seconds:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary and rows."""
        return {
            "summary": {
                "cases": len(self.rows),
                "succeeded": self.succeeded,
                "skipped": self.skipped,
                "failed": self.failed,
                "failure_reasons": self.failure_reasons(),
                "executor": self.executor,
                "seconds": round(self.seconds, 3),
                "started": self.started,
                "part_id": self.part[0],
                "num_parts": self.part[1],
                "with_warnings": len(self.warned),
                "interrupted": self.interrupted,
                "planned": self.planned or len(self.rows),
                "qc_threshold": self.qc_threshold,
                "need_review": len(self.needs_review()),
                "qc_scored": len(self.ranked()),
            },
            "skipped_inputs": [{"path": p, "reason": why} for p, why in self.skipped_inputs],
            "cases": [
                {
                    **asdict(r),
                    "warnings": list(r.warnings),
                    "qc_flags": list(r.qc_flags),
                    "seconds": round(r.seconds, 3),
                }
                for r in self.rows
            ],
        }

    def write(self, out_dir: Path, stem: str = "report") -> dict[str, Path]:
        """Write ``<stem>.csv``, ``<stem>.json`` and ``<stem>.html`` atomically into ``out_dir``."""
        files = {
            "csv": write_text_atomic(out_dir / f"{stem}.csv", self._csv()),
            "json": write_text_atomic(out_dir / f"{stem}.json", json.dumps(self.to_dict(), indent=2) + "\n"),
            "html": write_text_atomic(out_dir / f"{stem}.html", self._html()),
        }
        self.files = files
        return files

    def _csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "case_id",
                "status",
                "error",
                "seconds",
                "outputs",
                "warnings",
                "qc_score",
                "qc_flags",
                "qc_predicted_dice",
            ]
        )
        for r in self.rows:
            outputs = ";".join(f"{k}={v}" for k, v in sorted(r.outputs.items()))
            score = "" if r.qc_score is None else f"{r.qc_score:.4f}"
            w.writerow(
                [r.case_id, r.status, r.error, f"{r.seconds:.3f}", outputs, " | ".join(r.warnings), score,
                 " | ".join(r.qc_flags), ";".join(f"{k}={v:.3f}" for k, v in sorted(r.qc_predicted_dice.items()))]
            )  # fmt: skip
        return buf.getvalue()

    def _html(self) -> str:
        e = html.escape
        counts = "".join(
            f"<tr><th>{s}</th><td>{self.count(s)}</td></tr>"  # type: ignore[arg-type]
            for s in ("succeeded", "skipped", "failed")
        )
        failed = [r for r in self.rows if r.status == "failed"]
        fail_rows = "".join(f"<tr><td>{e(r.case_id)}</td><td>{e(r.error)}</td></tr>" for r in failed)
        fail_table = (
            f"<h2>Failures</h2><table><tr><th>case</th><th>error</th></tr>{fail_rows}</table>"
            if failed
            else "<p>No failures.</p>"
        )
        warned = self.warned
        warn_rows = "".join(
            f"<tr><td>{e(r.case_id)}</td><td>{'<br>'.join(e(w) for w in r.warnings)}</td></tr>" for r in warned
        )
        warn_table = (
            f"<h2>Warnings</h2><table><tr><th>case</th><th>warning</th></tr>{warn_rows}</table>" if warned else ""
        )
        skip_rows = "".join(f"<tr><td>{e(p)}</td><td>{e(why)}</td></tr>" for p, why in self.skipped_inputs)
        skip_table = (
            f"<h2>Input files not read</h2><table><tr><th>file</th><th>reason</th></tr>{skip_rows}</table>"
            if self.skipped_inputs
            else ""
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>medseg batch report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}tr.review{background:#fde8e8}</style></head><body>"
            f"<h1>medseg batch report</h1><p>{e(self.summary())}</p>{self._review_table()}"
            f"<p>Executor: {e(self.executor)}; part {self.part[0] + 1} of {self.part[1]}; started {e(self.started)}; "
            f"{len(warned)} case(s) with warnings. Details per case in report.csv and report.json.</p>"
            f"<table>{counts}</table>{fail_table}{warn_table}{skip_table}{self._case_table()}</body></html>\n"
        )

    def _review_table(self) -> str:
        """The review list: the cases ranked by ``qc_score``, highest first, with their flags and preview."""
        ranked = self.ranked()
        if not ranked:
            return ""
        e = html.escape
        rows = []
        for r in ranked:
            review = (r.qc_score or 0.0) >= self.qc_threshold
            previews = [v for v in sorted(r.outputs.values()) if v.lower().endswith(".png")]
            thumb = f"<a href='{e(previews[0])}'><img src='{e(previews[0])}' height='96'></a>" if previews else ""
            flags = "<br>".join(e(f) for f in r.qc_flags)
            rows.append(
                f"<tr class='{'review' if review else 'ok'}'><td>{e(r.case_id)}</td><td>{r.qc_score:.2f}</td>"
                f"<td>{'review' if review else ''}</td><td>{thumb}</td><td>{flags}</td></tr>"
            )
        return (
            f"<h2>Review list</h2><p>{len(self.needs_review())} of {len(ranked)} cases need review "
            f"(qc_score ≥ {self.qc_threshold:g}); ranked by qc_score (0: like the training cases, 1: certainly "
            "needs review; see docs/qc.md). Nothing is hidden: every case is also in the table below.</p>"
            "<table id='review'><tr><th>case</th><th>qc_score</th><th></th><th>preview</th><th>flags</th></tr>"
            f"{''.join(rows)}</table>"
        )

    def _case_table(self) -> str:
        """Every case of the run with its status, a preview (when one was exported) and links to its outputs."""
        e = html.escape
        rows = []
        for r in self.rows:
            previews = [v for v in sorted(r.outputs.values()) if v.lower().endswith(".png")]
            thumb = f"<a href='{e(previews[0])}'><img src='{e(previews[0])}' height='96'></a>" if previews else ""
            links = " ".join(f"<a href='{e(v)}'>{e(k)}</a>" for k, v in sorted(r.outputs.items()))
            note = e(r.error) if r.error else (f"{len(r.warnings)} warning(s)" if r.warnings else "")
            rows.append(
                f"<tr><td>{e(r.case_id)}</td><td>{e(r.status)}</td><td>{r.seconds:.1f}</td><td>{thumb}</td>"
                f"<td>{links}</td><td>{note}</td></tr>"
            )
        return (
            "<h2>All cases</h2><table><tr><th>case</th><th>status</th><th>s</th><th>preview</th><th>outputs</th>"
            f"<th>notes</th></tr>{''.join(rows)}</table>"
        )
