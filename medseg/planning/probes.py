"""Device probes: run a candidate network's training step where it will train, and measure it.

:class:`ProbeDevice` is the :class:`~medseg.planning.sizing.Device` the planner uses. It
starts one probe server (``python -m medseg.planning.probes``) that imports torch and
medseg once; each probe then builds the network, runs a warm-up and a few timed training
steps (medseg's augmentation, Dice+CE with deep supervision, SGD, gradient clipping, bf16
autocast on CUDA, as the trainer does) and reports:

- memory: on CUDA the peak allocated by torch (``max_memory_allocated``, reset per probe);
  on the CPU the peak resident memory (``VmHWM``) of a process forked from the server for
  that probe alone, so one probe's heap never inflates the next one's peak; the baseline
  (interpreter, torch, medseg) is measured in the same process before the network is built;
- seconds per training iteration (the fastest block of 3 consecutive timed steps, at the same
  thread count as the planning process), seconds per eval window (the faster of two), and one
  epoch's bookkeeping (checkpoint save, log and curve) when asked. A candidate whose first step
  takes longer than ``PROBE_MAX_S`` is not timed further: that step (an upper bound) is its time
  and a third of it per window its eval time, since no budget of minutes plans such a network
  and three more steps of a 3D nnU-Net patch on a CPU took minutes;
- the load average the probe saw (the machine may be shared: the planner reports it).

A probe that runs out of memory (CUDA OOM, or a CPU probe killed by the kernel) or takes
too long comes back as ``Measurement(ok=False)``; the planner then shrinks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.planning.decisions import fmt_bytes
from medseg.planning.sizing import PROBE_MAX_S, Measurement, ProbeRequest

#: Timed training steps stop after this many seconds (at least one block, at most 20 steps): on a
#: shared machine single steps vary several-fold, so the time is taken over seconds, not one step.
MIN_TIMING_S = 2.0
#: ... or after this fraction of a shorter training budget (never under ``FLOOR_TIMING_S``): a plan probes
#: about ten candidates, and probing a one-minute plan for twenty seconds would cost a third of its training.
TIMING_FRACTION = 0.01
FLOOR_TIMING_S = 0.5
MAX_TIMED_STEPS = 20
#: Steps per timing block; the fastest block's mean is the measurement (augmentation varies per step,
#: so one step is not a rate; a neighbour's burst slows some blocks, never makes one faster).
TIMING_BLOCK = 3


def timing_seconds(time_budget_s: float | None) -> float:
    """Seconds each probe times training steps for a plan with ``time_budget_s`` of training (None: no budget)."""
    if time_budget_s is None:
        return MIN_TIMING_S
    return min(MIN_TIMING_S, max(FLOOR_TIMING_S, TIMING_FRACTION * time_budget_s))


def best_block_mean(times: list[float], block: int = TIMING_BLOCK) -> float:
    """Mean of the fastest run of ``block`` consecutive ``times`` (all of them when fewer), seconds."""
    if len(times) <= block:
        return sum(times) / len(times)
    return min(sum(times[i : i + block]) / block for i in range(len(times) - block + 1))


# ---- the parent side ----------------------------------------------------------------------------
class ProbeDevice:
    """Measures candidate networks on ``device`` through a probe server process.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        threads: torch intra-op threads of the probes (default: this process's, i.e. what
            training in this process would use).
        timeout_s: a probe running longer is stopped and reported as failed.
        timing_s: seconds of training steps each probe times (:func:`timing_seconds`).

    Use as a context manager (the server is stopped on exit).
    """

    def __init__(
        self,
        device: str = "cpu",
        *,
        threads: int | None = None,
        timeout_s: float = 300.0,
        timing_s: float = MIN_TIMING_S,
    ) -> None:
        import torch

        self.name = device
        self.kind = "cuda" if device.startswith("cuda") else "cpu"
        if self.kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is available here; use --device cpu")
        if self.kind == "cpu" and device != "cpu":
            raise ConfigError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.threads = threads or torch.get_num_threads()
        self.timeout_s = timeout_s
        self.timing_s = timing_s
        self.info: dict[str, Any] = {}
        self._memo: dict[str, Measurement] = {}  # the same request in one session is measured once
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> ProbeDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server lifecycle --
    def _start(self) -> None:
        import medseg

        root = str(Path(medseg.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        cmd = [sys.executable, "-m", "medseg.planning.probes", "--device", self.name, "--threads", str(self.threads)]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (the server's stderr, closed in close())
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True
        )
        reply = self._read(120.0)
        if reply is None or not reply.get("ready"):
            self.close()
            raise ConfigError(f"probe process for {self.name} did not start: {self._stderr_tail()}")
        self.info = reply

    def _read(self, timeout: float) -> dict[str, Any] | None:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self._proc.stdout.readline()
        return json.loads(line) if line else None

    def _stderr_tail(self) -> str:
        if self._log is None:
            return "no output"
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def close(self) -> None:
        """Stop the probe server (and a probe it is running)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- Device protocol --
    def memory_budget(self) -> tuple[float, str]:
        """What the device has, with headroom: CUDA 90 % of the free memory; CPU 80 % of MemAvailable."""
        if self._proc is None:
            self._start()
        if self.kind == "cuda":
            free, total = self.info["cuda_free"], self.info["cuda_total"]
            return 0.9 * free, f"90 % of the {fmt_bytes(free)} free of {fmt_bytes(total)} on {self.name}"
        available, total = self.info["available"], self.info["total"]
        return 0.8 * available, f"80 % of the {fmt_bytes(available)} available of {fmt_bytes(total)} RAM"

    def measure(self, request: ProbeRequest) -> Measurement:
        """Run one probe (restarts the server after a failure)."""
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        payload = {
            "network": request.network,
            "patch": list(request.patch),
            "batch": request.batch,
            "augment": request.augment,
            "window_batch": request.window_batch,
            "overhead": request.overhead,
            "image_shape": list(request.image_shape) if request.image_shape else None,
            "training": request.training,
            "timing_s": self.timing_s,
        }
        key = json.dumps(payload, sort_keys=True)
        if key in self._memo:
            return self._memo[key]
        t0 = time.perf_counter()
        try:
            self._proc.stdin.write((json.dumps(payload) + "\n").encode())
            self._proc.stdin.flush()
            reply = self._read(self.timeout_s)
        except (BrokenPipeError, OSError) as exc:
            reply = {"ok": False, "error": f"probe process failed ({exc})"}
        wall = time.perf_counter() - t0
        if reply is None:
            error = f"no answer within {self.timeout_s:.0f} s" if self._proc.poll() is None else self._stderr_tail()
            self.close()
            return Measurement(False, wall_s=wall, error=error)
        if not reply.get("ok"):
            return Measurement(False, wall_s=wall, error=str(reply.get("error")))
        nan = math.nan
        self._memo[key] = Measurement(
            True,
            peak_bytes=float(reply["peak_bytes"]),
            baseline_bytes=float(reply["baseline_bytes"]),
            seconds_per_iteration=float(reply["seconds_per_iteration"]),
            seconds_per_window=float(reply.get("seconds_per_window", nan)),
            epoch_overhead_s=float(reply.get("epoch_overhead_s", nan)),
            wall_s=wall,
            load=float(reply.get("load", nan)),
        )
        return self._memo[key]


def time_preprocessing(dataset: Any, fingerprint: Any, preprocess: list[dict[str, Any]]) -> float:
    """Seconds to read, pre-process and cache the whole dataset as the trainer does (measured on one case).

    The case with the median voxel count is prepared exactly as ``prepare_dataset`` would
    (read, steps, label onto the grid, ``.npy`` files); the time scales with each case's voxels.
    """
    import numpy as np

    from medseg.core.steps import build_step
    from medseg.training.cache import prepare_case

    steps = [build_step(name, **opts) for item in preprocess for name, opts in item.items()]

    def apply(volume: Any) -> Any:
        for step in steps:
            volume = step(volume)
        return volume

    voxels = np.array([float(np.prod(c["shape"])) for c in fingerprint.cases])
    pick = int(np.argsort(voxels)[len(voxels) // 2])
    case = dataset.case(fingerprint.cases[pick]["case_id"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        prepare_case(case, apply, Path(tmp) / "case")
        seconds = time.perf_counter() - t0
    return float(seconds * voxels.sum() / voxels[pick])


# ---- the server side ----------------------------------------------------------------------------
def _status(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in bytes (Linux), or ``ru_maxrss`` elsewhere."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs``)."""
    with contextlib.suppress(OSError):  # not Linux: the peak then includes earlier probes' (forked: none)
        Path("/proc/self/clear_refs").write_text("5")


def _meminfo() -> dict[str, float]:
    out = {"available": math.nan, "total": math.nan}
    info = Path("/proc/meminfo")
    if info.exists():
        for line in info.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemAvailable", "MemTotal"):
                out["available" if key == "MemAvailable" else "total"] = float(rest.split()[0]) * 1024
    if not math.isfinite(out["total"]):
        out["total"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        out["available"] = out["total"] / 2
    return out


def _measure(req: dict[str, Any], device_name: str, threads: int) -> dict[str, Any]:
    """One probe in this process: build, warm up, time training steps, peak memory."""
    from contextlib import nullcontext

    import torch

    from medseg.core.memory import reuse_freed_memory
    from medseg.networks import build_network
    from medseg.training.config import TrainingConfig
    from medseg.training.losses import SegmentationLoss
    from medseg.training.step import training_parts, training_step
    from medseg.transforms.augment import Augment

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        baseline = float(torch.cuda.memory_allocated(device))
    else:
        _reset_peak()
        baseline = _status("VmRSS")
    opts = req["network"]
    patch, batch = tuple(req["patch"]), int(req["batch"])
    torch.manual_seed(0)
    net = build_network("unet", **opts).to(device)
    settings = TrainingConfig.from_dict(dict(req.get("training") or {}))
    optimizer, precision, scaler = training_parts(net, settings, device)
    loss_fn = SegmentationLoss(settings.loss)
    augment = Augment() if req.get("augment", True) else None
    x = torch.randn((batch, int(opts["in_channels"]), *patch), device=device)
    y = torch.randint(0, int(opts["out_channels"]), (batch, 1, *patch), device=device)
    generator = torch.Generator().manual_seed(0)
    stack = contextlib.ExitStack()
    sample = (
        _sampler(stack, req, int(opts["in_channels"]), int(opts["out_channels"]), settings)
        if req.get("image_shape")
        else None
    )
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext  # windows only

    def step() -> None:
        xb, yb = (x, y) if sample is None else (t.to(device, non_blocking=True) for t in sample())
        xi, yi = augment(xb, yb, generator) if augment is not None else (xb, yb)
        training_step(net, optimizer, loss_fn, scaler, precision, device, settings.grad_clip, xi, yi)

    timing = float(req.get("timing_s", MIN_TIMING_S))
    result: dict[str, Any] = {"ok": True, "baseline_bytes": baseline, "load": os.getloadavg()[0]}
    with reuse_freed_memory():
        t0 = time.perf_counter()
        step()  # warm-up: allocator, kernel selection
        sync()
        first = time.perf_counter() - t0
        times: list[float] = []
        while first <= PROBE_MAX_S and (
            len(times) < TIMING_BLOCK or (sum(times) < timing and len(times) < MAX_TIMED_STEPS)
        ):
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        result["seconds_per_iteration"] = best_block_mean(times) if times else first
        result["peak_bytes"] = float(torch.cuda.max_memory_allocated(device)) if cuda else _status("VmHWM")
        if req.get("window_batch") and times:
            result["seconds_per_window"] = _window_seconds(
                net, int(req["window_batch"]), x.shape[1], patch, autocast, sync
            )
        elif req.get("window_batch"):  # a forward pass is about a third of a training step, per window
            result["seconds_per_window"] = first / (3 * batch)
    if req.get("overhead"):
        result["epoch_overhead_s"] = _overhead_seconds(net, optimizer, opts)
    result["load"] = max(result["load"], os.getloadavg()[0])
    stack.close()
    return result


def _sampler(stack: contextlib.ExitStack, req: dict[str, Any], channels: int, classes: int, settings: Any) -> Any:
    """The trainer's patch sampler, set as ``settings`` (a TrainingConfig) set it, over one cached case of
    ``image_shape`` (memory-mapped ``.npy``, as in training)."""
    import numpy as np

    from medseg.training.cache import CachedCase, foreground_locations
    from medseg.training.loader import PatchStream

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    shape = tuple(int(s) for s in req["image_shape"])
    rng = np.random.default_rng(0)
    np.save(folder / "image.npy", rng.standard_normal((channels, *shape), dtype=np.float32))
    label = np.zeros((1, *shape), np.uint8)
    centre = tuple(slice(s // 4, max(s // 4 + 1, 3 * s // 4)) for s in shape)
    label[(0, *centre)] = rng.integers(1, max(classes, 2), size=label[(0, *centre)].shape, dtype=np.uint8)
    np.save(folder / "label.npy", label)
    np.savez(folder / "locations.npz", **foreground_locations(label, rng))
    case = CachedCase("probe", folder, np.eye(4), shape)  # type: ignore[arg-type]
    stream = PatchStream(
        [case],
        tuple(req["patch"]),
        int(req["batch"]),
        foreground_ratio=settings.foreground_ratio,
        class_balanced=settings.class_balanced,
        seed=0,
    )
    draw = np.random.default_rng(1)
    return lambda: stream.batch(draw)


def _window_seconds(net: Any, n: int, channels: int, patch: tuple[int, ...], autocast: Any, sync: Any) -> float:
    import torch

    net.eval()
    device = next(net.parameters()).device
    windows = torch.randn((n, channels, *patch), device=device)
    times = []
    with torch.no_grad(), autocast():
        net(windows)
        sync()
        for _ in range(2):  # the faster of two: a busy neighbour only ever slows one down
            t0 = time.perf_counter()
            net(windows)
            sync()
            times.append(time.perf_counter() - t0)
    net.train()
    return min(times) / n


def _overhead_seconds(net: Any, optimizer: Any, opts: dict[str, Any]) -> float:
    """One epoch's bookkeeping as the trainer does it: last.pt with optimiser state, log CSV and curve."""
    from medseg.training.checkpoint import save_checkpoint
    from medseg.training.logs import EpochLog

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log = EpochLog(folder)
        log.append({"epoch": 1, "train_loss": 1.0, "lr": 0.01, "time_s": 1.0, "data_wait_s": 0.0})  # imports, fonts
        t0 = time.perf_counter()
        save_checkpoint(
            folder / "last.pt",
            net,
            network_name="unet",
            network_options=opts,
            training_state={"optimizer": optimizer.state_dict()},
        )
        log.append({"epoch": 2, "train_loss": 0.9, "lr": 0.01, "time_s": 1.0, "data_wait_s": 0.0})
        seconds = time.perf_counter() - t0
        log.close()
    return seconds


def _forked(req: dict[str, Any], device: str, threads: int) -> dict[str, Any]:
    """Run :func:`_measure` in a child forked from this server: a fresh heap and peak for every probe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the probe process
        os.close(read_end)
        try:
            reply = _measure(req, device, threads)
        except BaseException as exc:  # report any failure to the parent, then leave without cleanup
            reply = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        os.write(write_end, json.dumps(reply).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = " (out of memory: killed by the kernel)" if sig == signal.SIGKILL else ""
        return {"ok": False, "error": f"probe killed by signal {sig}{why}"}
    return {"ok": False, "error": f"probe exited with status {os.WEXITSTATUS(status)}"}


def _serve(device: str, threads: int) -> None:
    """The probe server: one JSON request per stdin line, one JSON reply per stdout line."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by libraries goes to stderr, not into the protocol
    import torch

    import medseg.core.memory
    import medseg.networks
    import medseg.training.checkpoint
    import medseg.training.logs
    import medseg.training.optim
    import medseg.transforms.augment  # noqa: F401  (imported once here, shared by every forked probe)
    from medseg.training.losses import SegmentationLoss

    SegmentationLoss("dice_ce")  # imports MONAI's losses (seconds) once; no tensor work before fork
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot  # the training curve of the bookkeeping probe

    torch.set_num_threads(threads)
    info: dict[str, Any] = {"ready": True, "rss": _status("VmRSS"), **_meminfo()}
    cuda = device.startswith("cuda")
    if cuda:
        free, total = torch.cuda.mem_get_info(torch.device(device))
        info.update(cuda_free=float(free), cuda_total=float(total))
    protocol.write(json.dumps(info) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if cuda:
            try:
                reply = _measure(req, device, threads)
            except torch.OutOfMemoryError:
                reply = {"ok": False, "error": "CUDA out of memory"}
            import gc

            gc.collect()
            torch.cuda.empty_cache()
        else:
            reply = _forked(req, device, threads)
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="medseg planning probe server (internal)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    _serve(args.device, args.threads)
