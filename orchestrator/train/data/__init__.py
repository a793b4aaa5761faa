"""Data pipeline: readers for every format, convert, token index with meta.json, mixtures, templates, packing."""
