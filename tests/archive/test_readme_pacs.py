"""The README's archive commands, run literally against a real Orthanc on the ports they name."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_readme import blocks

VENV = ROOT / ".venv"


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _commands(console: str) -> list[str]:
    """``$ cmd \\`` continuation lines → one command each."""
    out: list[str] = []
    for line in console.splitlines():
        if line.startswith("$ "):
            out.append(line[2:].rstrip(" \\"))
        elif out:
            out[-1] += " " + line.strip().rstrip(" \\")
    return out


@pytest.mark.slow
def test_the_readme_archive_commands_run_as_written(orthanc_factory: Callable, mr_series: Callable, tmp_path: Path):
    if not (VENV / "bin" / "medseg").exists() or Path(sys.prefix).resolve() != VENV.resolve():
        pytest.skip("runs where the README's set-up made .venv (CI does)")
    if not (_free(8042) and _free(4242)):
        pytest.skip("ports 8042/4242 that the README names are in use")
    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series

    server = orthanc_factory(http_port=8042, dicom_port=4242)
    image, _ = ct_phantom((24, 20, 8), (3.0, 3.0, 3.0), seed=1)
    write_series(image, tmp_path / "mr", modality="MR", patient_id="PAT001", study_uid="1.2.826.0.1.3680043.8.498.1")
    server.upload(tmp_path / "mr")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("sample_data", "pipelines", ".venv"):
        (work / name).symlink_to(ROOT / name)
    predict_web, predict_dimse, listen = _commands(blocks("Archives (PACS)", "console")[0])
    for command in (predict_web, predict_dimse):
        res = subprocess.run(["bash", "-c", command], cwd=work, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, command + "\n" + res.stdout[-2000:] + res.stderr[-3000:]
    assert len(list((work / "out").glob("*.seg.dcm"))) == 1 and list((work / "out").glob("*.rtstruct.dcm"))
    assert server.series_by_modality().get("SEG") == 1 and server.series_by_modality().get("RTSTRUCT") == 1
    node = subprocess.Popen(["bash", "-c", f"exec {listen}"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while _free(11112):  # listening
        assert node.poll() is None and time.monotonic() < deadline, node.communicate()
        time.sleep(0.2)
    os.killpg(node.pid, signal.SIGTERM)
    out, err = node.communicate(timeout=60)
    assert node.returncode == 0, out + err
