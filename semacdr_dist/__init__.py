"""SemaCDR on Ray: prepare, semantics, train, evaluate.

Layers (docs/INTERNALS.md; tests/test_import_rules.py enforces them): the top modules
(`config`, `validate`, `pipeline`, `cli`) compose the config and hand each stage its part;
the stage packages (`data`, `model`, `semantics`, `train`, `evaluate`) never import the
top; the foundation (`rundir`, `manifest`, `lease`, `runtime`, `hardware`, `errors`,
`profiling`) imports only itself.
"""
__version__ = "0.1.0"
