"""Readers of public formats; each yields :class:`~semacdr_dist.data.readers.base.Chunk` objects."""
