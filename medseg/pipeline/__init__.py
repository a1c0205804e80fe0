"""Declarative pipelines: YAML files validated as a whole, and their Python twin :class:`Pipeline`."""

from medseg.pipeline.config import InferenceSpec, InputSpec, NetworkSpec, PipelineSpec
from medseg.pipeline.pipeline import Pipeline

__all__ = ["InferenceSpec", "InputSpec", "NetworkSpec", "Pipeline", "PipelineSpec"]
