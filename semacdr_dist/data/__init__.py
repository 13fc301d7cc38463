"""The prepare stage and the data contracts.

Owns: the parquet schemas (`schemas`), the readers of public formats (`readers/`), the
synthetic catalog, `Catalog`, batch collation (`batch`) and `run_prepare` (raw files ->
items/, interactions/, sequences/, stats.json).
May import: the foundation modules (rundir, manifest, errors...) only.
"""
