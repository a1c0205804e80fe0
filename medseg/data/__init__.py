"""Synthetic data: seeded CT-like phantoms for tests, benchmarks and the accuracy study."""

from medseg.data.phantoms import ORGANS, ct_phantom, write_phantom_dataset

__all__ = ["ORGANS", "ct_phantom", "write_phantom_dataset"]
