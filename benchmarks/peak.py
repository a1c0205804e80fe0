"""Run a command, then print its wall time and the peak RSS of its processes as one JSON line.

``python benchmarks/peak.py -- nnUNetv2_predict ...``: the peak is ``ru_maxrss`` of
``RUSAGE_CHILDREN`` (the largest single descendant that was waited for), in MiB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python benchmarks/peak.py -- COMMAND [ARGS...]")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, check=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"returncode": proc.returncode, "total_s": seconds, "peak_rss_mib": peak}), flush=True)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
