"""Schemas, readers for public formats, the synthetic catalog and the prepare stage."""
