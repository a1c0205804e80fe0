"""The contract between the batch engine and the work done on one case."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medseg.batch.cases import Case


@runtime_checkable
class CaseProcessor(Protocol):
    """What the batch engine runs on every case, in three stages.

    The engine may call :meth:`load` in a background thread for the next cases while
    :meth:`run` works on the current one, and :meth:`save` in another thread; :meth:`run`
    is always called from one thread per process, so one process owns each GPU. With the
    Dask executor the processor is pickled to the workers.
    """

    # Optional: ``prepare_inputs(case)`` is called (in the loader thread) before a case's inputs are hashed,
    # for inputs that arrive while earlier cases run (:class:`medseg.archive.fetch.FetchingProcessor`).

    def fingerprint(self) -> str:
        """A hash of everything besides the inputs that decides the outputs.

        Pipeline config, model weights, medseg version. The engine adds the hashes of
        the case's input files; a case whose recorded fingerprint differs is run again.
        """
        ...

    def load(self, case: Case) -> Any:
        """Read and pre-process the case on the CPU (may run in a worker thread)."""
        ...

    def run(self, loaded: Any) -> Any:
        """The heavy part (inference, usually on the GPU) on what :meth:`load` returned."""
        ...

    def save(self, case: Case, result: Any, out_dir: Path) -> dict[str, Path]:
        """Write the outputs atomically inside ``out_dir``; return output name → path.

        Use :func:`medseg.batch.output_path` to build the paths and :func:`medseg.write`
        or :func:`medseg.io.atomic_path` to write them.
        """
        ...

    # Optional: ``quality(result) -> dict`` gives the case's quality-control record (``qc_score`` in [0, 1],
    # ``qc_flags``, ...; see medseg.qc); the engine stores it in the provenance and the report.


def describe_processor(processor: CaseProcessor) -> dict[str, Any]:
    """The processor's own description for provenance (pipeline, model, device), or its class name."""
    describe = getattr(processor, "describe", None)
    info: dict[str, Any] = {"processor": f"{type(processor).__module__}.{type(processor).__qualname__}"}
    if callable(describe):
        info.update(describe())
    return info
