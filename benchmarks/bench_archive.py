"""Cases per hour from an archive (Orthanc, DICOMweb and DIMSE) vs the same series on disk.

    python benchmarks/bench_archive.py --cases 6 --shape 64 64 32

Needs Orthanc and its DICOMweb plugin (apt-get install orthanc orthanc-dicomweb). Starts a private
Orthanc on free 127.0.0.1 ports, uploads --cases synthetic MR series, then runs the demo brain-mask
pipeline (CPU, NIfTI output) over them three ways: from the folders on disk, and from the archive
over DICOMweb and over DIMSE (fetch included, empty cache; series are fetched while earlier cases
run). Prints one JSON object: seconds and cases/hour for disk, dicomweb and dimse, the archive/disk
ratios (goal: >= 0.8), and the seconds to fetch one series alone over each protocol (median of 3).
Run it on a quiet machine: other work on the CPUs changes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=6, help="series (= cases) per run (default 6)")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=[64, 64, 32], help="voxels per series X Y Z; Z = instances (64 64 32)"
    )
    parser.add_argument(
        "--executor", default="inprocess", choices=["inprocess", "overlap"], help="batch executor (inprocess)"
    )
    args = parser.parse_args()

    from medseg.archive.client import connect
    from medseg.archive.fetch import FetchingProcessor, prefetch_cases
    from medseg.archive.urls import parse_archive_url
    from medseg.batch import discover_cases, run_batch
    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor
    from tests.archive.conftest import start_orthanc, stop_orthanc

    tmp = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    series_root = tmp / "series"
    for i in range(args.cases):
        img, _ = ct_phantom(tuple(args.shape), (3.0, 3.0, 3.0), seed=i)
        write_series(img, series_root / f"s{i:03d}", modality="MR", patient_id=f"P{i:03d}", series_number=i + 1)
    pipeline = Pipeline.from_yaml(ROOT / "pipelines" / "brain_mask_mr.yaml")
    processor = PipelineProcessor(pipeline, pipeline.checkpoint_paths(), device="cpu", exporters=["nifti"])
    processor.predictor  # noqa: B018  (networks loaded before timing)
    server = start_orthanc(tmp / "orthanc")
    results: dict[str, float] = {}
    try:
        server.upload(series_root)
        warm = discover_cases(series_root, case_ids="folder")[:1]
        run_batch(warm, processor, tmp / "warm", progress=False)
        t0 = time.perf_counter()
        report = run_batch(
            discover_cases(series_root, case_ids="folder"),
            processor,
            tmp / "disk",
            executor=args.executor,
            progress=False,
        )
        results["disk"] = time.perf_counter() - t0
        assert report.succeeded == args.cases, report.summary()
        for name, url in (("dicomweb", server.dicomweb), ("dimse", server.dimse)):
            out = tmp / name
            t0 = time.perf_counter()
            cases, fetcher = prefetch_cases(connect(parse_archive_url(url)), out / ".archive")
            try:  # fetching overlaps the prediction of earlier cases (as medseg predict -i URL does)
                report = run_batch(
                    cases, FetchingProcessor(processor, fetcher), out, executor=args.executor, progress=False
                )
            finally:
                fetcher.close()
            results[name] = time.perf_counter() - t0
            assert report.succeeded == args.cases, report.summary()
        fetch = {
            name: fetch_seconds(url, tmp / f"fetch-{name}")
            for name, url in (("dicomweb", server.dicomweb), ("dimse", server.dimse))
        }
    finally:
        stop_orthanc(server)
    per_hour = {k: round(3600 * args.cases / v, 1) for k, v in results.items()}
    summary = {
        "cases": args.cases,
        "shape": args.shape,
        "executor": args.executor,
        "seconds": {k: round(v, 2) for k, v in results.items()},
        "cases_per_hour": per_hour,
        "ratio_to_disk": {k: round(per_hour[k] / per_hour["disk"], 3) for k in ("dicomweb", "dimse")},
        "fetch_seconds_per_series": fetch,
    }
    print(json.dumps(summary, indent=2))


def fetch_seconds(url: str, cache: Path, repeats: int = 3) -> float:
    """Median seconds to fetch the first series of the archive at ``url`` on its own (no prediction)."""
    import statistics

    from medseg.archive.client import connect
    from medseg.archive.urls import parse_archive_url

    archive = connect(parse_archive_url(url))
    record = archive.find_series({}, {})[0]
    seconds = []
    for i in range(repeats):
        t0 = time.perf_counter()
        archive.fetch_series(record, cache / str(i))
        seconds.append(time.perf_counter() - t0)
    return round(statistics.median(seconds), 3)


if __name__ == "__main__":
    main()
