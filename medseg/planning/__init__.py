"""Planning: dataset fingerprint → a tuned, self-explaining pipeline (``medseg plan``).

``fingerprint.py`` measures the dataset (cached by file content hashes), ``rules.py`` holds
nnU-Net v2's planning rules as pure functions, ``planner.py`` turns a fingerprint and device
measurements (``probes.py``) into a pipeline whose every decision carries its reason,
``render.py`` writes it as commented YAML, and ``postprocessing.py`` picks post-processing
steps from cross-validation predictions.
"""
