"""Command-line interface (``medseg``)."""
