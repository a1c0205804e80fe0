"""Archive addresses, filters and options: parsed and checked before anything is contacted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.archive.client import split_filters
from medseg.archive.urls import ArchiveURL, Credentials, dicomweb_credentials, parse_archive_url
from medseg.errors import ConfigError
from tests.conftest import ROOT

PIPELINE = ROOT / "pipelines" / "brain_mask_mr.yaml"


def test_addresses_parse_and_display_without_credentials() -> None:
    web = parse_archive_url("dicomweb+https://pacs.example.org:8443/dcm4chee-arc/aets/DCM4CHEE/rs/")
    assert web == ArchiveURL("dicomweb", "pacs.example.org", 8443, "/dcm4chee-arc/aets/DCM4CHEE/rs", https=True)
    assert web.base_url == "https://pacs.example.org:8443/dcm4chee-arc/aets/DCM4CHEE/rs"
    assert parse_archive_url("dicomweb+http://h/dicom-web").port == 80
    node = parse_archive_url("dimse://ORTHANC@127.0.0.1:4242")
    assert (node.aet, node.host, node.port, node.display()) == (
        "ORTHANC",
        "127.0.0.1",
        4242,
        "dimse://ORTHANC@127.0.0.1:4242",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("http://h:1/x", "not an archive address"),
        ("dimse://127.0.0.1:4242", "AE title"),
        ("dimse://ABCDEFGHIJKLMNOPQ@h:1", "AE title"),
        ("dimse://A@h:99999", "bad port"),
        ("dicomweb+http://bob:pw@h:1/x", "MEDSEG_DICOMWEB_USER"),
        ("dimse://A@h:1/path", "no path"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as err:
        parse_archive_url(text)
    assert "pw" not in str(err.value)


def test_filters_split_into_study_and_series_levels() -> None:
    study, series = split_filters(["Modality=CT", "StudyDate=20240101-20241231"], study_uid="1.2", series_uid="1.3")
    assert study == {"StudyDate": "20240101-20241231", "StudyInstanceUID": "1.2"}
    assert series == {"Modality": "CT", "SeriesInstanceUID": "1.3"}
    with pytest.raises(ConfigError, match="did you mean 'Modality'"):
        split_filters(["Modalty=CT"])
    with pytest.raises(ConfigError, match="KEYWORD=VALUE"):
        split_filters(["Modality"])


def test_credentials_come_from_the_environment_or_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = parse_archive_url("dicomweb+http://pacs:8042/dicom-web")
    for var in ("MEDSEG_DICOMWEB_TOKEN", "MEDSEG_DICOMWEB_USER", "MEDSEG_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pacs login carol password fromnetrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert dicomweb_credentials(url) == Credentials(user="carol", password="fromnetrc")
    monkeypatch.setenv("MEDSEG_DICOMWEB_USER", "alice")
    with pytest.raises(ConfigError, match="MEDSEG_DICOMWEB_PASSWORD is not set"):
        dicomweb_credentials(url)
    monkeypatch.setenv("MEDSEG_DICOMWEB_PASSWORD", "pw-secret")
    creds = dicomweb_credentials(url)
    assert creds.user == "alice" and "pw-secret" not in repr(creds)
    monkeypatch.setenv("MEDSEG_DICOMWEB_TOKEN", "tok")
    assert dicomweb_credentials(url).token == "tok"


def test_bad_archive_options_fail_in_one_line_before_any_work(tmp_path: Path) -> None:
    """All started at once (two cores): each is one 'error:' line, exit 1, and writes nothing."""
    web = "dicomweb+http://127.0.0.1:9/dicom-web"
    series_dir = tmp_path / "series"
    series_dir.mkdir()
    runs = {
        "--filter needs an archive": (["-i", str(series_dir), "--filter", "Modality=CT"], "is not one"),
        "bad filter": (["-i", web, "--filter", "Modalty=CT"], "did you mean 'Modality'"),
        "send without DICOM output": (["-i", web, "-e", "nifti", "--send", web], "add -e dicom-seg"),
        "bad AE title": (["-i", web, "--ae", "A" * 17], "--ae"),
        "TLS for DICOMweb": (["-i", web, "--tls-ca", str(PIPELINE)], "https://"),
        "bad send URL": (["-i", web, "--send", "ftp://x"], "--send 'ftp://x': not an archive address"),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "medseg.cli", "predict", str(PIPELINE), *args, "-o", str(tmp_path / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, (args, _) in runs.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), (name, err)
        assert runs[name][1] in lines[0], (name, lines[0])
        assert not (tmp_path / name).exists(), name


def test_an_association_the_archive_rejects_gives_one_line(tmp_path: Path, orthanc) -> None:
    url = f"dimse://NOTORTHANC@127.0.0.1:{orthanc.dicom_port}"
    res = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "predict", str(PIPELINE), "-i", url, "-o", str(tmp_path / "o"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert "rejected the association from MEDSEG" in lines[0] and "NOTORTHANC" in lines[0]
