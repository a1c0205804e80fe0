"""medseg predict -i ARCHIVE --send ARCHIVE against a real Orthanc: pull, segment, push, re-run, bad peers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.archive.conftest import free_port
from tests.conftest import ROOT

PIPELINE = ROOT / "pipelines" / "brain_mask_mr.yaml"


def medseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=600, env=full
    )


def provenance(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.provenance.json"))]


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_pull_predict_push_then_rerun_skips_what_was_sent(tmp_path: Path, orthanc, mr_series, protocol: str) -> None:
    series = mr_series("mr", patient_id="PAT001")
    assert orthanc.upload(series) == 8
    url = orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse
    out = tmp_path / "out"
    args = (
        "predict",
        str(PIPELINE),
        "-i",
        url,
        "--filter",
        "Modality=MR",
        "--filter",
        "StudyDate=19000101-29991231",
        "-o",
        str(out),
        "-e",
        "nifti,dicom-seg",
        "--send",
        url,
        "-q",
    )
    res = medseg(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 succeeded" in res.stdout
    uid = pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID
    assert (out / ".archive" / uid).is_dir() and len(list((out / ".archive" / uid).iterdir())) == 8
    assert (out / f"{uid}.nii.gz").is_file()
    (record,) = provenance(out)
    sent = record["sent"][url]
    assert sent["status"] == "sent" and sent["via"] == ("STOW-RS" if protocol == "dicomweb" else "C-STORE")
    assert [f["path"] for f in sent["files"]] == [f"{uid}.seg.dcm"] or sent["files"][0]["path"].endswith(".dcm")
    assert orthanc.series_by_modality().get("SEG") == 1  # the result is in the archive
    # a re-run neither segments nor sends again
    res = medseg(*args)
    assert res.returncode == 0, res.stderr
    assert "0 succeeded, 1 skipped" in res.stdout
    assert provenance(out)[0]["sent"][url]["at"] == sent["at"]
    assert orthanc.series_by_modality().get("SEG") == 1


def test_an_archive_that_is_down_gives_one_line(tmp_path: Path) -> None:
    port = free_port()
    for url in (f"dicomweb+http://127.0.0.1:{port}/dicom-web", f"dimse://ORTHANC@127.0.0.1:{port}"):
        res = medseg("predict", str(PIPELINE), "-i", url, "-o", str(tmp_path / "out"), "-q")
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 1 and len(lines) == 1, res.stderr
        assert lines[0].startswith(f"error: cannot reach the archive at {url} (")
        assert "check the address/port and that it runs" in lines[0]


def test_a_non_image_series_is_reported_and_the_image_series_runs(tmp_path: Path, orthanc, mr_series) -> None:
    from tests.archive.conftest import write_sr

    series = mr_series("mr")
    orthanc.upload(series)
    orthanc.upload(write_sr(tmp_path / "sr", next(series.iterdir())).parent)
    out = tmp_path / "out"
    res = medseg("predict", str(PIPELINE), "-i", orthanc.dicomweb, "-o", str(out), "-e", "nifti", "-q")
    assert res.returncode == 0, res.stderr
    assert "1 succeeded" in res.stdout
    assert "a Structured Report (SR), not an image series; not segmented" in res.stderr
    report = json.loads((out / "report.json").read_text())
    assert [s["reason"] for s in report["skipped_inputs"]] == [
        "a Structured Report (SR), not an image series; not segmented"
    ]


def test_a_series_with_fewer_instances_than_the_archive_lists_is_not_segmented(
    tmp_path: Path, orthanc, mr_series
) -> None:
    """The archive counts 9 instances but sends 8: nothing is kept, the reason names both counts."""
    from dataclasses import replace

    from medseg.archive.client import connect
    from medseg.archive.fetch import _fetch_one
    from medseg.archive.urls import parse_archive_url

    orthanc.upload(mr_series("mr"))
    archive = connect(parse_archive_url(orthanc.dimse))
    (record,) = archive.find_series({}, {})
    why = _fetch_one(archive, replace(record, instances=9), tmp_path / "cache")
    assert isinstance(why, str) and "received 8 of the 9 instances" in why and "not segmented" in why
    assert not any((tmp_path / "cache").iterdir())  # no partial folder left, no case
    assert _fetch_one(archive, record, tmp_path / "cache") == tmp_path / "cache" / record.series_uid
    # the same check when series are fetched while earlier cases run: the case fails with the reason
    from medseg.archive.fetch import SeriesPrefetch
    from medseg.batch import Case
    from medseg.errors import ArchiveError

    prefetch = SeriesPrefetch(archive, tmp_path / "lazy", [replace(record, instances=9)])
    try:
        with pytest.raises(ArchiveError, match="received 8 of the 9 instances"):
            prefetch.wait(Case(record.series_uid, (tmp_path / "lazy" / record.series_uid,)))
    finally:
        prefetch.close()
    assert not (tmp_path / "lazy" / record.series_uid).exists()


def test_credentials_come_from_the_environment_and_are_never_written(
    tmp_path: Path, orthanc_factory, mr_series
) -> None:
    secret = "s3cr3t-Pa55"
    server = orthanc_factory(users={"alice": secret})
    server.upload(mr_series("mr"))
    out = tmp_path / "out"
    args = (
        "predict",
        str(PIPELINE),
        "-i",
        server.dicomweb,
        "-o",
        str(out),
        "-e",
        "nifti,dicom-seg",
        "--send",
        server.dicomweb,
        "-q",
    )
    res = medseg(*args, env={"NETRC": str(tmp_path / "none")})
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1 and "HTTP 401" in lines[0] and "MEDSEG_DICOMWEB_USER" in lines[0]
    res = medseg(*args, env={"MEDSEG_DICOMWEB_USER": "alice", "MEDSEG_DICOMWEB_PASSWORD": secret, "NETRC": "/dev/null"})
    assert res.returncode == 0, res.stderr
    assert server.series_by_modality().get("SEG") == 1
    assert secret not in res.stdout + res.stderr
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".csv", ".html", ".log", ".txt"):
            assert secret not in f.read_text(errors="replace"), f
    # a URL with credentials in it is refused before anything is contacted
    bad = server.dicomweb.replace("//127.0.0.1", f"//alice:{secret}@127.0.0.1")
    res = medseg("predict", str(PIPELINE), "-i", bad, "-o", str(out))
    assert res.returncode == 1 and secret not in res.stderr and "MEDSEG_DICOMWEB_USER" in res.stderr


def test_a_failed_send_keeps_the_files_and_the_next_run_sends_only(tmp_path: Path, orthanc_factory, mr_series) -> None:
    source = orthanc_factory()
    source.upload(mr_series("mr"))
    port = free_port()
    target = f"dicomweb+http://127.0.0.1:{port}/dicom-web"
    out = tmp_path / "out"
    args = ("predict", str(PIPELINE), "-i", source.dicomweb, "-o", str(out), "-e", "dicom-seg", "--send", target, "-q")
    res = medseg(*args)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"to {target} failed" in res.stderr and "re-run the same command to retry the send" in res.stderr
    (record,) = provenance(out)
    assert record["sent"][target]["status"] == "failed"
    assert all((out / o["path"]).is_file() for o in record["outputs"].values())  # the files are kept
    assert json.loads((out / "report.json").read_text())["summary"]["failed"] == 1
    dest = orthanc_factory(http_port=port)
    res = medseg(*args)
    assert res.returncode == 0, res.stderr
    assert "0 succeeded, 1 skipped" in res.stdout  # not segmented again, only sent
    assert provenance(out)[0]["sent"][target]["status"] == "sent"
    assert dest.series_by_modality() == {"SEG": 1}


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
@pytest.mark.parametrize("damage", ["short_pixel_data", "no_position"])
def test_a_malformed_series_in_the_archive_fails_in_one_line_and_the_others_run(
    tmp_path: Path, orthanc, mr_series, protocol: str, damage: str
) -> None:
    """One instance of series A is malformed as stored in the archive (pixel data shorter than its rows × columns,
    or no ImagePositionPatient): A fails in one line naming it, B is segmented."""
    series_a, series_b = mr_series("a", series_number=1), mr_series("b", series_number=2)
    victim = sorted(series_a.iterdir())[3]
    ds = pydicom.dcmread(victim)
    if damage == "short_pixel_data":
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    else:
        del ds.ImagePositionPatient
    ds.save_as(victim, enforce_file_format=True)
    orthanc.upload(series_a)
    orthanc.upload(series_b)
    uid_a = str(ds.SeriesInstanceUID)
    out = tmp_path / "out"
    url = orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse
    res = medseg("predict", str(PIPELINE), "-i", url, "-o", str(out), "-e", "nifti", "-q")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 succeeded, 0 skipped, 1 failed" in res.stdout, res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip().startswith(f"{uid_a}:")]
    assert len(lines) == 1, res.stderr
    assert "cut off" not in lines[0], lines[0]  # the archive sent what it holds: the data are bad, not the network
    assert ("pixel data" in lines[0]) if damage == "short_pixel_data" else ("ImagePositionPatient" in lines[0])
    assert not (out / f"{uid_a}.nii.gz").exists()
