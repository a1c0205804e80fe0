"""The Dask executor gives the same outputs and report as the in-process run; lost workers are retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.batch import discover_cases, read_provenance, run_batch
from tests.batch.conftest import write_cases
from tests.batch.processors import DieOnceProcessor, ThresholdProcessor


@pytest.mark.slow
def test_dask_cluster_by_address_matches_inprocess(tmp_path: Path) -> None:
    from distributed import LocalCluster

    src = tmp_path / "in"
    write_cases(src, 4)
    (src / "broken.nii.gz").write_text("not a nifti")
    cases = discover_cases(src)
    processor = ThresholdProcessor(warn_on=("case_002",))
    local = run_batch(cases, processor, tmp_path / "local", progress=False)
    # worker threads in this process start in well under a second on 2 cores; the process-based
    # LocalCluster is exercised by the lost-worker test below
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask = run_batch(
            cases, processor, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address, progress=False
        )
    assert dask.executor == "dask"
    assert [(r.case_id, r.status, r.error, r.warnings) for r in dask.rows] == [
        (r.case_id, r.status, r.error, r.warnings) for r in local.rows
    ]
    assert (dask.succeeded, dask.failed) == (4, 1)
    for i in range(4):
        name = f"case_{i:03d}.nii.gz"
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert read_provenance(tmp_path / "dask", "case_002")["warnings"] == [
        "UserWarning: case_002: suspicious intensities"
    ]
    # the sidecars written by Dask workers are what the next run (any executor) resumes from
    again = run_batch(cases, processor, tmp_path / "dask", executor="overlap", progress=False)
    assert (again.skipped, again.failed) == (4, 1)


@pytest.mark.slow
def test_local_cluster_processes_and_lost_worker_is_retried(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 3)
    processor = DieOnceProcessor(die_case="case_001", marker=str(tmp_path / "died"), warn_on=("case_002",))
    report = run_batch(discover_cases(src), processor, tmp_path / "out", executor="dask", workers=2, progress=False)
    assert (tmp_path / "died").exists()  # the worker running case_001 was killed once ...
    assert (report.succeeded, report.failed) == (3, 0)  # ... and the case was retried on a fresh one
    assert (tmp_path / "out" / "case_001.nii.gz").exists()
    rows = {r.case_id: r for r in report.rows}
    assert rows["case_002"].warnings == ("UserWarning: case_002: suspicious intensities",)  # captured in workers
    assert rows["case_000"].warnings == ()


def test_unreachable_scheduler_is_a_config_error(tmp_path: Path) -> None:
    import dask

    from medseg.batch import Case
    from medseg.errors import ConfigError

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    ):
        run_batch(
            [Case("a", (tmp_path / "a.nii.gz",))],
            ThresholdProcessor(),
            tmp_path / "out",
            executor="dask",
            scheduler="tcp://127.0.0.1:9",
            progress=False,
        )
