"""The batch report's QC columns and review list, from rows with known scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from medseg.batch.report import BatchReport, CaseResult


def _report(threshold: float = 0.5) -> BatchReport:
    rows = [
        CaseResult("a", "succeeded", qc_score=0.2, qc_flags=("mild",)),
        CaseResult("b", "skipped", qc_score=0.9, qc_flags=("strong", "second"), qc_predicted_dice={"1": 0.42}),
        CaseResult("c", "failed", error="InputError: bad"),
        CaseResult("d", "succeeded", qc_score=0.5),
    ]
    return BatchReport(rows=rows, qc_threshold=threshold)


def test_ranked_and_needs_review_follow_the_threshold() -> None:
    report = _report()
    assert [r.case_id for r in report.ranked()] == ["b", "d", "a"]  # the failed case has no score
    assert [r.case_id for r in report.needs_review()] == ["b", "d"]  # qc_score ≥ T
    assert [r.case_id for r in report.needs_review(0.95)] == []


def test_csv_json_and_html_carry_the_scores(tmp_path: Path) -> None:
    files = _report(0.8).write(tmp_path)
    with files["csv"].open() as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert (
        rows["b"]["qc_score"] == "0.9000" and rows["b"]["qc_flags"] == "strong | second" and rows["c"]["qc_score"] == ""
    )
    assert rows["b"]["qc_predicted_dice"] == "1=0.420" and rows["a"]["qc_predicted_dice"] == ""
    data = json.loads(files["json"].read_text())
    assert data["summary"]["need_review"] == 1 and data["summary"]["qc_threshold"] == 0.8
    assert {c["case_id"]: c["qc_flags"] for c in data["cases"]}["b"] == ["strong", "second"]
    html = files["html"].read_text()
    assert "1 of 3 cases need review (qc_score ≥ 0.8)" in html
    review = html[html.index("Review list") : html.index("All cases")]
    assert review.index(">b<") < review.index(">d<") < review.index(">a<") and "strong<br>second" in review
