"""What the PIPELINE argument of ``medseg predict``/``validate`` names: a file, a model package, an installed
model or a shipped pipeline."""

from __future__ import annotations

from pathlib import Path

from medseg.errors import CheckpointError, ConfigError, did_you_mean


def resolve_target(target: str | Path) -> Path:
    """The file behind ``target``, in this order:

    1. an existing file: a pipeline YAML or a checkpoint as it is; a ``.zip`` model package is
       verified and unpacked (once, under ``$MEDSEG_HOME/cache``) and its ``pipeline.yaml`` used;
    2. an unpacked model folder (it has ``medseg-model.json``): verified, its ``pipeline.yaml``;
    3. the name of an installed model (``medseg model install``): its ``pipeline.yaml``;
    4. the name of a shipped pipeline (``brain_extraction``, ``ct_organs``).

    Raises:
        ConfigError: nothing by that name (the message lists the names there are).
    """
    from medseg.models.package import MANIFEST, verify_folder
    from medseg.models.store import installed_model, installed_models, package_pipeline, unpacked
    from medseg.pipeline.shipped import shipped_pipeline, shipped_pipelines

    path = Path(target)
    if path.is_file():
        return package_pipeline(unpacked(path)) if path.suffix.lower() == ".zip" else path
    if path.is_dir():
        if (path / MANIFEST).is_file():
            verify_folder(path)
            return package_pipeline(path)
        raise ConfigError(f"{path}: a folder; give a pipeline file, a model package (.zip) or a model name")
    name = str(target)
    if "/" not in name and "\\" not in name:
        folder = installed_model(name)
        if folder is not None:
            return package_pipeline(folder)
        shipped = shipped_pipeline(name)
        if shipped is not None:
            return shipped
    names = sorted({*shipped_pipelines(), *(m["name"] for m in installed_models())})
    raise ConfigError(
        f"{target}: no such pipeline file, model package, installed model or shipped pipeline"
        f"{did_you_mean(Path(name).stem, names)}"
    )


def check_checkpoints_exist(pipeline_file: Path, checkpoints: list[Path]) -> None:
    """Stop before any case when ``inference.checkpoints`` of a pipeline file names files that are not there.

    Raises:
        CheckpointError: names the key, the file, and what to do (for a shipped pipeline installed without
            its sample data: pass --checkpoint).
    """
    from medseg.pipeline.shipped import is_shipped

    for i, path in enumerate(checkpoints):
        if path.is_file():
            continue
        hint = "fix the path or pass --checkpoint FILE"
        if is_shipped(pipeline_file):
            hint = (
                "this shipped pipeline's checkpoint comes with medseg's source checkout or sample data; pass "
                "--checkpoint FILE (e.g. one you trained with 'medseg train')"
            )
        raise CheckpointError(
            f"{pipeline_file}: inference.checkpoints[{i}]: {path}: no such checkpoint file (relative to the "
            f"pipeline's folder); {hint}"
        )
