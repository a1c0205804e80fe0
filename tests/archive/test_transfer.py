"""Transfers from a real Orthanc: C-GET speed, and transfers cut off half-way (the series is never segmented)."""

from __future__ import annotations

import time
from pathlib import Path

from medseg.archive.client import connect
from medseg.archive.urls import parse_archive_url


def test_c_get_does_not_wait_for_delayed_acknowledgements(tmp_path: Path, orthanc, mr_series) -> None:
    """Orthanc's next C-STORE request waited ~40 ms per instance for our delayed TCP ACK; now it does not."""
    orthanc.upload(mr_series("mr", shape=(16, 16, 16)))
    archive = connect(parse_archive_url(orthanc.dimse))
    (record,) = archive.find_series({}, {})
    seconds = []
    for i in range(2):
        t0 = time.perf_counter()
        assert archive.fetch_series(record, tmp_path / f"c{i}") == 16
        seconds.append(time.perf_counter() - t0)
    # 16 delayed acknowledgements alone take at least 16 × 40 ms = 0.64 s; the fixed fetch takes ~0.15 s
    assert min(seconds) < 0.45, seconds
