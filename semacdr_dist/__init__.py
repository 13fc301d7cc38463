"""SemaCDR on Ray: prepare, semantics, train, evaluate."""
__version__ = "0.1.0"
