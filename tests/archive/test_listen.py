"""medseg listen: a storage SCP that segments what a modality sends and forwards the result to Orthanc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage

from tests.archive.conftest import free_port
from tests.conftest import ROOT

PIPELINE = ROOT / "pipelines" / "brain_mask_mr.yaml"


@contextmanager
def listener(out: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``medseg listen`` in the background; waits (bounded) until it listens; always stopped after."""
    port = free_port()
    log = out.parent / "listen.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medseg.cli", "listen", str(PIPELINE), "-o", str(out), "--port", str(port), *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        try:
            deadline = time.monotonic() + 120
            while b"listening as" not in log.read_bytes():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            yield proc, port, log
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def c_store(folder: Path, port: int, calling: str) -> list[int] | None:
    """Send every file of ``folder`` as ``calling``; the statuses, or None when the association was rejected."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage, [pydicom.uid.ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
    try:
        if not assoc.is_established:
            return None
        return [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in sorted(folder.iterdir())]
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def test_listener_segments_a_received_series_and_sends_the_result(tmp_path: Path, orthanc, mr_series) -> None:
    series = mr_series("mr", patient_id="PAT-LISTEN")
    uid = str(pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID)
    out = tmp_path / "out"
    with listener(out, "--settle", "2", "--allow", "SCANNER", "-e", "nifti,dicom-seg", "--send", orthanc.dicomweb) as (
        proc,
        port,
        log,
    ):
        assert c_store(series, port, "INTRUDER") is None  # a calling AE title not allowed is rejected
        assert c_store(series, port, "SCANNER") == [0] * 8
        sidecar = out / f"{uid}.provenance.json"
        deadline = time.monotonic() + 180
        while not (sidecar.is_file() and "sent" in json.loads(sidecar.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    record = json.loads(sidecar.read_text())
    assert record["sent"][orthanc.dicomweb]["status"] == "sent"
    assert (out / f"{uid}.nii.gz").is_file()
    assert (out / ".processed" / uid).is_dir() and not any((out / ".incoming").glob("1*"))
    assert orthanc.series_by_modality().get("SEG") == 1
    text = log.read_text()
    assert "stopped (SIGTERM): 1 series processed, 0 failed" in text
    assert "PAT-LISTEN" not in text  # patient ids are not logged
    report = json.loads((out / "report.json").read_text())
    assert [c["status"] for c in report["cases"]] == ["succeeded"]


def test_a_series_received_before_a_stop_is_processed_after_a_restart(tmp_path: Path, mr_series) -> None:
    series = mr_series("mr")
    uid = str(pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID)
    out = tmp_path / "out"
    with listener(out, "--settle", "600", "-e", "nifti") as (proc, port, log):
        assert c_store(series, port, "SCANNER") == [0] * 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    assert len(list((out / ".incoming" / uid).glob("*.dcm"))) == 8  # queued on disk, not lost
    with listener(out, "--settle", "1", "-e", "nifti") as (proc, port, log):
        deadline = time.monotonic() + 180
        while not (out / f"{uid}.provenance.json").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    assert (out / f"{uid}.nii.gz").is_file()


def test_the_listener_speaks_tls_and_refuses_plain_associations(tmp_path: Path) -> None:
    import shutil
    import ssl

    import pytest
    from pynetdicom.sop_class import Verification

    from medseg.archive.listen import Listener, ListenerConfig
    from medseg.archive.tls import tls_context
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pipeline = Pipeline.from_yaml(PIPELINE)
    processor = PipelineProcessor(pipeline, pipeline.checkpoint_paths(), device="cpu")
    port = free_port()
    config = ListenerConfig(port=port, settle_s=60, ssl_context=tls_context(cert, key, None, server=True))
    node = Listener(config, processor, tmp_path / "out")
    node.start()
    try:
        client = tls_context(None, None, cert, server=False)
        assert isinstance(client, ssl.SSLContext)
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 10
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG", tls_args=(client, "127.0.0.1"))
        try:
            assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()
        # a plain (unencrypted) A-ASSOCIATE-RQ gets no A-ASSOCIATE-AC (PDU type 0x02): the TLS handshake fails
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                bytes([0x01, 0x00])
                + (68).to_bytes(4, "big")
                + b"\x00\x01\x00\x00"
                + b"MEDSEG".ljust(16)
                + b"SCANNER".ljust(16)
                + bytes(32)
            )
            try:
                answer = raw.recv(16)
            except (ConnectionResetError, TimeoutError):
                answer = b""
        assert not answer.startswith(b"\x02")
    finally:
        node.shutdown()


def test_a_received_non_image_series_is_reported_not_segmented(tmp_path: Path, mr_series) -> None:
    from medseg.archive.listen import INCOMING, PROCESSED, Listener, ListenerConfig
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor
    from tests.archive.conftest import write_sr

    out = tmp_path / "out"
    sr = write_sr(out / INCOMING / "1.2.3", next(mr_series("mr").iterdir()))
    pipeline = Pipeline.from_yaml(PIPELINE)
    node = Listener(ListenerConfig(settle_s=0.1), PipelineProcessor(pipeline, pipeline.checkpoint_paths()), out)
    assert node.complete() == [sr.parent]  # queued on disk: complete once settled
    assert node.process(sr.parent) is None
    report = json.loads((out / "report.json").read_text())
    assert report["skipped_inputs"] == [
        {"path": "1.2.3", "reason": "a Structured Report (SR), not an image series; not segmented"}
    ]
    assert (out / PROCESSED / "1.2.3" / sr.name).is_file() and not list(out.glob("*.provenance.json"))


def test_a_series_whose_association_was_aborted_is_held_reported_and_segmented_once_re_sent(
    tmp_path: Path, mr_series
) -> None:
    """The modality aborts after 3 of 8 instances: nothing is segmented, the series is reported incomplete
    once settled; the whole series re-sent over an association that is released is segmented."""
    import threading

    from medseg.archive.listen import INCOMPLETE, Listener, ListenerConfig
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor

    series = mr_series("mr")
    uid = str(pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID)
    out = tmp_path / "out"
    pipeline = Pipeline.from_yaml(PIPELINE)
    processor = PipelineProcessor(pipeline, pipeline.checkpoint_paths(), device="cpu", exporters=["nifti"])
    node = Listener(ListenerConfig(port=free_port(), settle_s=0.5), processor, out)
    node.start()
    serving = threading.Thread(target=node.serve, kwargs={"poll_s": 0.1})
    serving.start()
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(MRImageStorage, [pydicom.uid.ExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", node.config.port, ae_title="MEDSEG")
        assert assoc.is_established
        files = sorted(series.iterdir())
        assert [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in files[:3]] == [0, 0, 0]
        assoc.abort()
        ae.shutdown()
        rows = wait_for_report(out, uid, "failed")
        assert "the association from SCANNER was aborted after 3 instance(s)" in rows[uid]["error"]
        assert "not segmented (re-send the whole series)" in rows[uid]["error"]
        assert not (out / f"{uid}.nii.gz").exists() and not (out / f"{uid}.provenance.json").exists()
        assert len(list((out / INCOMPLETE / uid).glob("*.dcm"))) == 3
        assert c_store(series, node.config.port, "SCANNER") == [0] * 8  # the modality sends it again
        wait_for_report(out, uid, "succeeded")
        assert (out / f"{uid}.nii.gz").is_file() and not (out / INCOMPLETE / uid).exists()
    finally:
        node.stop()
        serving.join(timeout=120)
    assert not serving.is_alive()


def wait_for_report(out: Path, uid: str, status: str, timeout_s: float = 120) -> dict[str, dict]:
    """The report's rows by case id, once the case ``uid`` has ``status`` (polled, bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = out / "report.json"
        rows = {c["case_id"]: c for c in json.loads(report.read_text())["cases"]} if report.is_file() else {}
        if rows.get(uid, {}).get("status") == status:
            return rows
        assert time.monotonic() < deadline, f"{uid} never {status}: {rows}"
        time.sleep(0.1)
