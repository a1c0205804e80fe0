"""The three stages of one case — prepare (hash, skip check, load), infer, finish (save, provenance).

Each stage turns any ``Exception`` into a failed :class:`CaseResult`, so one bad case never
stops the batch. Warnings raised while a stage works on a case are recorded for that case,
also when several cases are in flight in different threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.batch.cases import Case
from medseg.batch.fingerprint import case_fingerprint, hash_input
from medseg.batch.processor import CaseProcessor, describe_processor
from medseg.batch.provenance import (
    default_device,
    environment,
    is_done,
    now_iso,
    output_record,
    provenance_path,
    read_provenance,
    write_provenance,
)
from medseg.batch.report import CaseResult
from medseg.errors import MedsegError, OutputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchContext:
    """What every stage needs; picklable so Dask workers receive it."""

    processor: CaseProcessor
    out_dir: Path
    processor_fingerprint: str
    force: bool = False


@dataclass
class CaseState:
    """A case between stages: its inputs' hashes, what load/run returned, timings and warnings."""

    case: Case
    fingerprint: str
    inputs: list[dict[str, Any]]
    started: str
    payload: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --- warnings, routed to the case the current thread works on -------------------------------------
_local = threading.local()
_router_lock = threading.Lock()
_router_installed = False


def _route(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    sink = getattr(_local, "sink", None)
    if sink is not None:
        sink.append(f"{category.__name__}: {message}")
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


_original_showwarning = warnings.showwarning


def _set_filters() -> None:
    # every occurrence of a data warning is recorded for its case (not once per code location);
    # developer-facing deprecation/import warnings (e.g. from libraries imported by a fresh Dask
    # worker during its first case) are not about the case and stay out of its record
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)


@contextlib.contextmanager
def warning_router() -> Iterator[None]:
    """For the duration of a batch: send every warning raised for a case to that case's record.

    Nested or concurrent use (the Dask executor with threads in the same process) is a no-op.
    """
    global _router_installed, _original_showwarning
    with _router_lock:
        owner = not _router_installed
        _router_installed = True
    if not owner:
        yield
        return
    with warnings.catch_warnings():
        _set_filters()
        _original_showwarning = warnings.showwarning
        warnings.showwarning = _route
        try:
            yield
        finally:
            with _router_lock:
                _router_installed = False


def ensure_worker_router() -> None:
    """In a Dask worker process: install the router for good (the process only runs cases)."""
    global _router_installed, _original_showwarning
    with _router_lock:
        if _router_installed:
            return
        _router_installed = True
        _set_filters()
        _original_showwarning = warnings.showwarning
        warnings.showwarning = _route


@contextlib.contextmanager
def _collect(sink: list[str]) -> Iterator[None]:
    previous = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        yield
    finally:
        _local.sink = previous


# --- errors -------------------------------------------------------------------------------------------
def describe_error(exc: BaseException, case: Case | None = None) -> str:
    """``"Type: message"`` for the report; out-of-memory errors become ``"out of memory: ..."``.

    Full input paths in the message are shortened to file names (folders may carry patient names).
    """
    if _is_oom(exc):
        text = f"out of memory: {exc}".rstrip(": ")
    else:
        text = f"{type(exc).__name__}: {exc}"
    if case is not None:
        for p in sorted(case.inputs, key=lambda q: len(str(q)), reverse=True):
            for form in {str(p.resolve()), str(p)}:
                text = text.replace(form, p.name)
    return " ".join(text.split())


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _failed(
    case: Case, exc: Exception, seconds: float, fingerprint: str = "", warned: list[str] | None = None
) -> CaseResult:
    error = describe_error(exc, case)
    if not isinstance(exc, MedsegError) and not _is_oom(exc):
        logger.debug("case %s failed", case.case_id, exc_info=exc)
    if _is_oom(exc):
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return CaseResult(case.case_id, "failed", error, seconds, warnings=tuple(warned or ()), fingerprint=fingerprint)


# --- stages -------------------------------------------------------------------------------------------
def prepare(ctx: BatchContext, case: Case) -> CaseState | CaseResult:
    """Hash the inputs; return ``skipped`` when done already, else load the case."""
    t0 = time.perf_counter()
    state: CaseState | None = None
    sink: list[str] = []
    try:
        with _collect(sink):
            arrive = getattr(ctx.processor, "prepare_inputs", None)
            if callable(arrive):  # inputs that arrive while earlier cases run (series fetched from an archive)
                arrive(case)
            inputs = [hash_input(p) for p in case.inputs]
            fp = case_fingerprint(ctx.processor_fingerprint, inputs, case)
            _check_same_source(ctx.out_dir, case, inputs)
            if not ctx.force:
                record = is_done(ctx.out_dir, case.case_id, fp)
                if record is not None:
                    outputs = {k: v["path"] for k, v in record["outputs"].items()}
                    score, flags, dice = qc_fields(record.get("qc"))
                    return CaseResult(
                        case.case_id, "skipped", "", time.perf_counter() - t0, outputs, (), fp, score, flags, dice
                    )
            provenance_path(ctx.out_dir, case.case_id).unlink(missing_ok=True)
            state = CaseState(case, fp, inputs, now_iso(), warnings=sink)
            state.timings["hash"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            state.payload = ctx.processor.load(case)
            state.timings["load"] = time.perf_counter() - t1
        return state
    except Exception as exc:
        return _failed(case, exc, time.perf_counter() - t0, state.fingerprint if state else "", sink)


def _check_same_source(out_dir: Path, case: Case, inputs: list[dict[str, Any]]) -> None:
    """Refuse a case whose id already names the results of another input in ``out_dir``.

    Another input = other content at another place (other location hash, or other file name in
    sidecars written before locations were recorded). The same input edited in place, or moved,
    runs as before.

    Raises:
        OutputError: the outputs of ``case.case_id`` in ``out_dir`` came from another input.
    """
    record = read_provenance(out_dir, case.case_id)
    old = (record or {}).get("inputs", {}).get("images") if isinstance((record or {}).get("inputs"), dict) else None
    if not isinstance(old, list) or not all(isinstance(o, dict) for o in old):
        return
    new = inputs[: len(case.images)]
    if [o.get("sha256") for o in old] == [n["sha256"] for n in new]:
        return
    if all("location" in o for o in old):
        other = [o["location"] for o in old] != [n["location"] for n in new]
    else:
        other = [o.get("name") for o in old] != [n["name"] for n in new]
    if other:
        was = ", ".join(str(o.get("name")) for o in old)
        raise OutputError(
            f"case id '{case.case_id}' already names the results of another input in {out_dir} ({was}, finished "
            f"{record.get('finished', '?')}); nothing was overwritten: choose another output folder (-o), name "
            f"DICOM cases by series (--case-ids series), or delete {case.case_id}.* there to replace them"
        )


def infer(ctx: BatchContext, state: CaseState) -> CaseState | CaseResult:
    """Run the processor's heavy stage on a loaded case."""
    t0 = time.perf_counter()
    try:
        with _collect(state.warnings):
            state.payload = ctx.processor.run(state.payload)
        state.timings["run"] = time.perf_counter() - t0
        return state
    except Exception as exc:
        state.payload = None
        return _failed(state.case, exc, _total(state) + time.perf_counter() - t0, state.fingerprint, state.warnings)


def finish(ctx: BatchContext, state: CaseState) -> CaseResult:
    """Save the outputs, check they lie inside the output folder, then write the provenance (last)."""
    t0 = time.perf_counter()
    case = state.case
    try:
        with _collect(state.warnings):
            qc = case_quality(ctx.processor, state.payload)
            written = ctx.processor.save(case, state.payload, ctx.out_dir)
            state.payload = None
            outputs = _check_outputs(ctx.out_dir, case, written)
            state.timings["save"] = time.perf_counter() - t0
            write_provenance(
                ctx.out_dir,
                case.case_id,
                {
                    "status": "succeeded",
                    "fingerprint": state.fingerprint,
                    "processor_fingerprint": ctx.processor_fingerprint,
                    "inputs": {
                        "images": state.inputs[: len(case.images)],
                        "reference": state.inputs[len(case.images)] if case.reference is not None else None,
                        "extra": {k: str(v) for k, v in case.extra.items()},
                    },
                    "pipeline": describe_processor(ctx.processor),
                    "environment": environment(),
                    "device": default_device(),
                    "started": state.started,
                    "finished": now_iso(),
                    "timings_s": {k: round(v, 4) for k, v in state.timings.items()},
                    "warnings": list(state.warnings),
                    "qc": qc,
                    "outputs": {name: output_record(ctx.out_dir, rel) for name, rel in outputs.items()},
                },
            )
        score, flags, dice = qc_fields(qc)
        return CaseResult(
            case.case_id,
            "succeeded",
            "",
            _total(state),
            outputs,
            tuple(state.warnings),
            state.fingerprint,
            score,
            flags,
            dice,
        )
    except Exception as exc:
        state.payload = None
        return _failed(case, exc, _total(state) + time.perf_counter() - t0, state.fingerprint, state.warnings)


def case_quality(processor: CaseProcessor, payload: Any) -> dict[str, Any] | None:
    """The processor's QC record of a run result (its optional ``quality(result)``), or None without one."""
    quality = getattr(processor, "quality", None)
    if not callable(quality):
        return None
    record = quality(payload)
    return dict(record) if isinstance(record, dict) else None


def qc_fields(record: Any) -> tuple[float | None, tuple[str, ...], dict[str, float]]:
    """``(qc_score, qc_flags, qc_predicted_dice)`` of a QC record (as :func:`case_quality` returns or a sidecar
    stores)."""
    if not isinstance(record, dict) or not isinstance(record.get("qc_score"), (int, float)):
        return None, (), {}
    dice = record.get("qc_predicted_dice") or {}
    predicted = {str(k): float(v) for k, v in dice.items()} if isinstance(dice, dict) else {}
    return float(record["qc_score"]), tuple(str(f) for f in record.get("qc_flags") or ()), predicted


def _total(state: CaseState) -> float:
    return sum(state.timings.values())


def _check_outputs(out_dir: Path, case: Case, written: Any) -> dict[str, str]:
    if not isinstance(written, dict) or not written:
        raise OutputError(
            f"case '{case.case_id}': the processor's save() returned {type(written).__name__}, expected a "
            "non-empty dict of output name -> path"
        )
    root = out_dir.resolve()
    outputs: dict[str, str] = {}
    for name, path in written.items():
        p = Path(path)
        target = (p if p.is_absolute() else out_dir / p).resolve()
        if not target.is_relative_to(root) or target == root:
            raise OutputError(
                f"case '{case.case_id}': output '{name}' was written to {target}, outside the output folder {root}; "
                "build output paths with medseg.batch.output_path"
            )
        if not target.is_file():
            raise OutputError(f"case '{case.case_id}': output '{name}' ({target.name}) does not exist after save()")
        outputs[str(name)] = target.relative_to(root).as_posix()
    return outputs


def process_case(ctx: BatchContext, case: Case) -> CaseResult:
    """All three stages in this thread (the in-process and Dask executors)."""
    state = prepare(ctx, case)
    if isinstance(state, CaseResult):
        return state
    state = infer(ctx, state)
    if isinstance(state, CaseResult):
        return state
    return finish(ctx, state)


def process_case_in_worker(ctx: BatchContext, case: Case) -> CaseResult:
    """:func:`process_case` as a Dask task: record warnings per case in the worker process too."""
    ensure_worker_router()
    return process_case(ctx, case)
