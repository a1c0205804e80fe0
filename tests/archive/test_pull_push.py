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
    return subprocess.run([sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=600,
                          env=full)


def provenance(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.provenance.json"))]


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_pull_predict_push_then_rerun_skips_what_was_sent(tmp_path: Path, orthanc, mr_series, protocol: str) -> None:
    series = mr_series("mr", patient_id="PAT001")
    assert orthanc.upload(series) == 8
    url = orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse
    out = tmp_path / "out"
    args = ("predict", str(PIPELINE), "-i", url, "--filter", "Modality=MR", "--filter", "StudyDate=19000101-29991231",
            "-o", str(out), "-e", "nifti,dicom-seg", "--send", url, "-q")
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
