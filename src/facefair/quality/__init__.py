"""Data you can trust: likely label errors, duplicate images and per-group flag rates (``facefair clean``)."""
