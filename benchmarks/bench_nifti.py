"""Compressed NIfTI (``.nii.gz``) reading and writing: nibabel's gzip (Python's zlib), ISA-L (``isal``, what
medseg uses) and zlib-ng (``zlib_ng``, measured for comparison), on the e2e benchmark's 512×512×200 int16 CT.

Reading: time to the full array; the arrays must be identical. Writing: time to a file at compression
level 1 (nibabel's default) and its size; the decompressed bytes must be identical. Best of ``--repeats``.
``--results`` writes the table into benchmarks/RESULTS.md (block ``nifti``).

Run: ``python benchmarks/bench_nifti.py --results benchmarks/RESULTS.md`` (about 1 min).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, load_average, machine, update_section, write_ct_case


def best(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def read_with(module, path: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    with module.open(path, "rb") as fh:
        holder = nib.FileHolder(filename=str(path), fileobj=fh)
        img = nib.Nifti1Image.from_file_map({"header": holder, "image": holder})
        return np.asanyarray(img.dataobj)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--results", type=Path, help="write the table into this RESULTS.md")
    args = ap.parse_args()
    from isal import igzip
    from zlib_ng import gzip_ng

    import medseg

    source = write_ct_case(OUT / "ct_512x512x200.nii.gz", (512, 512, 200))
    img = nib.load(source)
    data = np.asanyarray(img.dataobj)
    payload = gzip.decompress(source.read_bytes())
    rows = []
    t_nib, a = best(lambda: np.asanyarray(nib.load(source).dataobj), args.repeats)
    t_isal, b = best(lambda: medseg.read(source).numpy()[0], args.repeats)
    t_ng, c = best(lambda: read_with(gzip_ng, source), args.repeats)
    same = all(np.array_equal(data, x) for x in (a, b, c))
    rows += [
        ("read", "nibabel (Python zlib)", t_nib, "-"),
        ("read", "medseg.read (ISA-L)", t_isal, "-"),
        ("read", "zlib-ng", t_ng, "-"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        volume = medseg.read(source)
        t_wnib, _ = best(lambda: nib.save(img, out / "nib.nii.gz"), args.repeats)
        t_wisal, _ = best(lambda: medseg.write(volume, out / "isal.nii.gz"), args.repeats)

        def zlib_ng_write() -> None:
            with (
                open(out / "ng.nii.gz", "wb") as raw,
                gzip_ng.GzipNGFile(fileobj=raw, mode="wb", compresslevel=1) as fh,
            ):
                holder = nib.FileHolder(fileobj=fh)
                img.to_file_map({"header": holder, "image": holder})

        t_wng, _ = best(zlib_ng_write, args.repeats)
        sizes = {k: (out / f"{k}.nii.gz").stat().st_size / 2**20 for k in ("nib", "isal", "ng")}
        same_bytes = {
            k: gzip.decompress((out / f"{k}.nii.gz").read_bytes())[352:] == payload[352:] for k in ("isal", "ng")
        }
    rows += [
        ("write", "nibabel (Python zlib, level 1)", t_wnib, f"{sizes['nib']:.1f} MiB"),
        ("write", "medseg.write (ISA-L, level 1)", t_wisal, f"{sizes['isal']:.1f} MiB"),
        ("write", "zlib-ng (level 1)", t_wng, f"{sizes['ng']:.1f} MiB"),
    ]
    for op, who, sec, note in rows:
        print(f"{op:5s} {who:34s} {sec:6.2f} s  {note}")
    print(f"identical arrays: {same}; identical voxel bytes after decompression: {same_bytes}")
    del igzip  # imported to fail early when isal is missing
    if args.results:
        m = machine()
        lines = [
            f"`python benchmarks/bench_nifti.py --results benchmarks/RESULTS.md` — {m['date']}, {m['cpu']}, "
            f"commit {m['commit']}; the e2e CT (512×512×200 int16, {source.stat().st_size / 2**20:.1f} MiB "
            f"compressed), best of {args.repeats}.",
            "",
            "| operation | implementation | seconds | file |",
            "|---|---|---:|---|",
            *(f"| {op} | {who} | {sec:.2f} | {note} |" for op, who, sec, note in rows),
            "",
            f"Identical arrays on reading: {same}; identical voxel data after decompressing what was written: "
            f"{same_bytes} (headers differ only where medseg sets its own fields). Load average after: {load_average()}.",
        ]
        update_section(args.results, "nifti", "\n".join(lines))


if __name__ == "__main__":
    main()
