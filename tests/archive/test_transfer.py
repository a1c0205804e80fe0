"""Transfers from a real Orthanc: C-GET acknowledgements, and transfers cut off half-way (the series is never segmented)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pydicom
import pytest

from medseg.archive import dimse
from medseg.archive.client import connect
from medseg.archive.fetch import _fetch_one
from medseg.archive.urls import parse_archive_url
from tests.archive.conftest import CuttingProxy
from tests.archive.test_pull_push import PIPELINE, medseg


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
def test_c_get_acknowledges_every_instance_at_once(tmp_path: Path, orthanc, mr_series, monkeypatch) -> None:
    """Orthanc's next C-STORE request waited ~40 ms per instance for our delayed TCP ACK (≈ 50 ms per instance,
    ``benchmarks/bench_archive.py``); quick-ack mode is set on the association's socket after every PDU we send."""
    seen: list[int] = []
    original = dimse._acknowledge_at_once

    def watched(event) -> None:
        original(event)
        sock = event.assoc.dul.socket.socket
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))

    monkeypatch.setattr(dimse, "_acknowledge_at_once", watched)
    orthanc.upload(mr_series("mr", shape=(16, 16, 16)))
    archive = connect(parse_archive_url(orthanc.dimse))
    (record,) = archive.find_series({}, {})
    assert archive.fetch_series(record, tmp_path / "c") == 16
    assert len(seen) >= 16 and all(seen), seen  # one C-STORE response per instance, each followed by quick-ack


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_a_transfer_cut_off_mid_series_fails_that_case_only_and_a_rerun_fetches_it_whole(
    tmp_path: Path, orthanc, mr_series, protocol: str
) -> None:
    """Every transfer of series A is cut after ~3 of its 8 instances: A fails with one line and is not
    segmented, B runs; nothing of A is cached, so the re-run (network fixed) fetches A whole and segments it."""
    series_a, series_b = mr_series("a", series_number=1), mr_series("b", series_number=2)
    orthanc.upload(series_a.parent)
    uid_a = str(pydicom.dcmread(next(series_a.iterdir())).SeriesInstanceUID)
    uid_b = str(pydicom.dcmread(next(series_b.iterdir())).SeriesInstanceUID)
    size = (series_a / sorted(p.name for p in series_a.iterdir())[0]).stat().st_size
    target = orthanc.http_port if protocol == "dicomweb" else orthanc.dicom_port
    proxy = CuttingProxy(target, uid_a.encode(), cut_after=3 * size)
    try:
        url = (orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse).replace(str(target), str(proxy.port))
        out = tmp_path / "out"
        args = ("predict", str(PIPELINE), "-i", url, "-o", str(out), "-e", "nifti", "-q")
        res = medseg(*args)
        assert res.returncode == 1, res.stdout + res.stderr
        assert proxy.cut_count == 3, res.stderr  # tried three times, cut every time
        assert "1 succeeded, 0 skipped, 1 failed" in res.stdout, res.stdout
        lines = [line for line in res.stderr.splitlines() if line.strip().startswith(f"{uid_a}:")]
        assert len(lines) == 1, res.stderr  # the summary's line for the case (report.json carries the same)
        assert "cut off mid-transfer" in lines[0] and "not segmented (re-run to fetch it again)" in lines[0]
        assert "of 8 instances had arrived" in lines[0]
        assert (out / f"{uid_b}.nii.gz").is_file() and not (out / f"{uid_a}.nii.gz").exists()
        assert not [p.name for p in (out / ".archive").iterdir() if uid_a in p.name]  # no partial series kept
        report = json.loads((out / "report.json").read_text())
        assert {c["case_id"]: c["status"] for c in report["cases"]} == {uid_a: "failed", uid_b: "succeeded"}
        proxy.cuts = 0  # the network is fixed
        res = medseg(*args)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "1 succeeded, 1 skipped, 0 failed" in res.stdout, res.stdout
        assert len(list((out / ".archive" / uid_a).glob("*.dcm"))) == 8
        assert (out / f"{uid_a}.nii.gz").is_file()
    finally:
        proxy.close()


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_a_transfer_cut_off_once_is_retried_and_the_series_arrives_whole(
    tmp_path: Path, orthanc, mr_series, protocol: str
) -> None:
    series = mr_series("a")
    orthanc.upload(series)
    uid = str(pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID)
    target = orthanc.http_port if protocol == "dicomweb" else orthanc.dicom_port
    proxy = CuttingProxy(target, uid.encode(), cut_after=2000, cuts=1)
    try:
        url = (orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse).replace(str(target), str(proxy.port))
        archive = connect(parse_archive_url(url))
        (record,) = archive.find_series({}, {})
        assert _fetch_one(archive, record, tmp_path / "cache") == tmp_path / "cache" / uid
        assert proxy.cut_count == 1
        assert len(list((tmp_path / "cache" / uid).glob("*.dcm"))) == 8
    finally:
        proxy.close()
