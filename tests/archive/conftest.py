"""A real Orthanc (Debian's package) per test: DICOMweb and DIMSE on free 127.0.0.1 ports, data in tmp."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
MEDSEG_AET = "MEDSEG"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: its ports, its log, and REST helpers (upload, list)."""

    http_port: int
    dicom_port: int
    medseg_port: int
    log: Path
    auth: tuple[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_file: Any = field(default=None, repr=False)

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"dicomweb+http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://ORTHANC@127.0.0.1:{self.dicom_port}"

    def request(self, method: str, path: str, data: bytes | None = None) -> Any:
        req = urllib.request.Request(self.rest + path, data=data, method=method)
        if self.auth:
            import base64

            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def upload(self, folder: Path) -> int:
        """POST every file of ``folder`` to /instances; returns how many were stored."""
        n = 0
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.request("POST", "/instances", f.read_bytes())
            n += 1
        return n

    def series_by_modality(self) -> dict[str, int]:
        """Modality → number of instances over every stored series."""
        out: dict[str, int] = {}
        for sid in self.request("GET", "/series"):
            info = self.request("GET", f"/series/{sid}")
            mod = info["MainDicomTags"].get("Modality", "")
            out[mod] = out.get(mod, 0) + len(info["Instances"])
        return out


def start_orthanc(
    tmp: Path,
    *,
    users: dict[str, str] | None = None,
    http_port: int | None = None,
    dicom_port: int | None = None,
    medseg_port: int | None = None,
) -> Orthanc:
    tmp.mkdir(parents=True, exist_ok=True)
    http, dicom, medseg = http_port or free_port(), dicom_port or free_port(), medseg_port or free_port()
    config = {
        "Name": "medseg-test",
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "StorageDirectory": str(tmp / "storage"),
        "IndexDirectory": str(tmp / "index"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {"medseg": [MEDSEG_AET, "127.0.0.1", medseg]},
        "DicomCheckCalledAet": True,
        "HttpServerThreads": 4,
        "ConcurrentJobs": 1,
    }
    (tmp / "config.json").write_text(json.dumps(config))
    log = tmp / "orthanc.log"
    log_file = log.open("wb")
    proc = subprocess.Popen(
        [str(ORTHANC), str(tmp / "config.json")], stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp
    )
    server = Orthanc(http, dicom, medseg, log, tuple(next(iter(users.items()))) if users else None, proc, log_file)
    deadline = time.monotonic() + 30
    while True:  # bounded wait for GET /system
        try:
            server.request("GET", "/system")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_orthanc(server)
                raise RuntimeError(f"Orthanc did not start: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.2)


def stop_orthanc(server: Orthanc) -> None:
    proc = server.process
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if server.log_file is not None:
        server.log_file.close()


requires_orthanc = pytest.mark.skipif(
    not ORTHANC.exists() or not DICOMWEB_PLUGIN.exists(),
    reason="Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)",
)


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Start Orthanc servers; all stop after the test.

    Options: ``users={"name": "password"}`` turns authentication on; ``http_port``, ``dicom_port`` and
    ``medseg_port`` (where Orthanc reaches medseg's AE) choose ports instead of free ones.
    """
    if not ORTHANC.exists() or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    started: list[Orthanc] = []

    def _make(**options: Any) -> Orthanc:
        server = start_orthanc(tmp_path / f"orthanc{len(started)}", **options)
        started.append(server)
        return server

    yield _make
    for server in started:
        stop_orthanc(server)


@pytest.fixture
def orthanc(orthanc_factory: Callable[..., Orthanc]) -> Orthanc:
    """One running Orthanc without authentication."""
    return orthanc_factory()


@pytest.fixture
def mr_series(tmp_path: Path) -> Callable[..., Path]:
    """A small synthetic MR series (head-like blob) for the demo brain-mask pipeline; returns its folder."""
    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series

    def _make(name: str = "mr", patient_id: str = "PAT001", series_number: int = 1, shape=(24, 20, 8)) -> Path:
        img, _ = ct_phantom(shape, (3.0, 3.0, 3.0), seed=series_number)
        folder = tmp_path / "series" / name
        write_series(img, folder, modality="MR", patient_id=patient_id, series_number=series_number)
        return folder

    return _make


def write_sr(folder: Path, reference: Path) -> Path:
    """A Basic Text SR in the study of the series file ``reference``; returns its path."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ref = pydicom.dcmread(reference, stop_before_pixels=True)
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = ref.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = ref.PatientID, ref.get("PatientName", "")
    ds.StudyDate = ref.get("StudyDate", "")
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", 99, 1
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port`` that can cut transfers half-way, as a failing
    network or a peer that dies does.

    A connection whose client has sent ``marker`` (e.g. a SeriesInstanceUID in a C-GET identifier or a
    WADO-RS path) is closed (no A-ABORT, no end of the HTTP response) once ``cut_after`` bytes of the server's answer went through
    after it; the first ``cuts`` such connections are cut (None: all of them). ``cut_count`` says how many were.
    """

    def __init__(self, target_port: int, marker: bytes, cut_after: int, cuts: int | None = None) -> None:
        import threading

        self.target_port, self.marker, self.cut_after, self.cuts = target_port, marker, cut_after, cuts
        self.cut_count = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed: the proxy is done
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"doomed": False, "sent": 0}
            threading.Thread(target=self._upstream, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, state), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, state: dict[str, Any]) -> None:
        seen = b""
        while data := _recv(client):
            seen = (seen + data)[-4096:]
            with self._lock:  # decided before the request reaches the server, so its answer is counted whole
                if not state["doomed"] and self.marker in seen and (self.cuts is None or self.cut_count < self.cuts):
                    state["doomed"] = True
                    self.cut_count += 1
            if not _send(server, data):
                break
        _close(server)

    def _downstream(self, server: socket.socket, client: socket.socket, state: dict[str, Any]) -> None:
        while data := _recv(server):
            if state["doomed"]:
                room = self.cut_after - state["sent"]
                state["sent"] += len(data)
                if room <= len(data):
                    _send(client, data[: max(room, 0)])
                    _close(client)
                    _close(server)
                    return
            if not _send(client, data):
                break
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # shut already, by the other side or the other pump
        sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv on it
    sock.close()
