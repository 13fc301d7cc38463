"""The run directory: a local path or any URI that ``pyarrow.fs`` understands.

Every stage writes through this class so that output is atomic per file
(write to a temporary name, then move) and a stage killed half-way leaves only
whole shards behind; a rerun reads what is there and finishes the rest.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class StageIncomplete(RuntimeError):
    """A stage stopped on purpose before finishing (e.g. its time budget); rerun to continue."""


class RunDir:
    """A run directory rooted at ``uri`` (``/abs/path``, ``file:///...``, ``s3://...``)."""

    def __init__(self, uri: str | os.PathLike):
        uri = os.fspath(uri)
        if "://" not in uri:
            uri = os.path.abspath(os.path.expanduser(uri))
        self.uri = uri
        # Store options ride in the query (s3://b/run?endpoint_override=host:port&scheme=http for
        # MinIO or another S3-compatible store): every URI handed on keeps them.
        self.query = uri.split("?", 1)[1] if "?" in uri else ""
        self.fs, self.root = pafs.FileSystem.from_uri(uri)
        self.fs.create_dir(self.root, recursive=True)

    def __repr__(self) -> str:
        return f"RunDir({self.uri!r})"

    def path(self, *parts: str) -> str:
        """Filesystem path (inside ``self.fs``) of a relative location."""
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def local_path(self, *parts: str) -> str:
        """A path usable by libraries that need a local file (errors on remote stores)."""
        if not isinstance(self.fs, pafs.LocalFileSystem):
            raise ValueError(f"{self.uri} is not a local run directory")
        return self.path(*parts)

    def uri_of(self, *parts: str) -> str:
        """URI of a relative location (what Ray Data / another process can open)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return self.path(*parts)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{self.path(*parts)}" + (f"?{self.query}" if self.query else "")

    def display(self, *parts: str) -> str:
        """A location for messages: its URI without the store options of the query."""
        return self.uri_of(*parts).split("?", 1)[0]

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def makedirs(self, *parts: str) -> str:
        p = self.path(*parts)
        self.fs.create_dir(p, recursive=True)
        return p

    def delete(self, *parts: str) -> None:
        info = self.fs.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(info.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(info.path)

    def list_files(self, *parts: str, suffix: str = ".parquet") -> list[str]:
        """Sorted relative names of finished files in a sub-directory (temporaries excluded)."""
        base = self.path(*parts)
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(base, recursive=False)
        names = [
            i.base_name
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File and i.base_name.endswith(suffix) and ".tmp-" not in i.base_name
        ]
        return sorted(names)

    def _atomic(self, dest: str, write) -> None:
        parent = dest.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{dest}.tmp-{uuid.uuid4().hex[:8]}"
        write(tmp)
        self.fs.move(tmp, dest)

    def write_table(self, rel: str, table: pa.Table, **parquet_kwargs: Any) -> str:
        """Write one parquet file atomically; returns its path."""
        dest = self.path(rel)
        self._atomic(dest, lambda tmp: pq.write_table(table, tmp, filesystem=self.fs, **parquet_kwargs))
        return dest

    def read_table(self, *parts: str, columns: list[str] | None = None) -> pa.Table:
        """Read one parquet file, or every finished shard of a directory, as one table."""
        p = self.path(*parts)
        info = self.fs.get_file_info(p)
        if info.type == pafs.FileType.File:
            return pq.read_table(p, filesystem=self.fs, columns=columns)
        files = self.list_files(*parts)
        if not files:
            raise FileNotFoundError(f"no parquet shards under {self.uri_of(*parts)}")
        return pa.concat_tables(
            [pq.read_table(f"{p}/{f}", filesystem=self.fs, columns=columns) for f in files],
            promote_options="default",
        )

    def iter_tables(self, *parts: str, columns: list[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        """Yield (file name, table) for each finished shard, one at a time (bounded memory)."""
        p = self.path(*parts)
        for f in self.list_files(*parts):
            yield f, pq.read_table(f"{p}/{f}", filesystem=self.fs, columns=columns)

    def write_json(self, rel: str, obj: Any) -> str:
        dest = self.path(rel)
        data = json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode()

        def write(tmp: str) -> None:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)

        self._atomic(dest, write)
        return dest

    def read_json(self, rel: str) -> Any:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read().decode())

    def write_bytes(self, rel: str, data: bytes) -> str:
        dest = self.path(rel)

        def write(tmp: str) -> None:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)

        self._atomic(dest, write)
        return dest

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    # Stage completion markers: a stage writes `_SUCCESS.json` last, so its
    # presence means every file of the stage is whole.
    def is_done(self, stage: str) -> bool:
        return self.exists(stage, "_SUCCESS.json")

    def mark_done(self, stage: str, info: dict | None = None) -> None:
        self.write_json(f"{stage}/_SUCCESS.json", info or {})

    def clear_done(self, stage: str) -> None:
        self.delete(stage, "_SUCCESS.json")


_LOCAL_COPIES: dict[str, str] = {}


def local_dir(uri: str) -> str:
    """A local directory holding the files of ``uri``: the path itself when local, else a copy
    downloaded once per process (for libraries that only open local files, e.g. safetensors)."""
    if "://" not in uri or uri.startswith("file://"):
        return uri.removeprefix("file://")
    if uri not in _LOCAL_COPIES:
        import tempfile

        fs, root = pafs.FileSystem.from_uri(uri)
        dest = tempfile.mkdtemp(prefix="semacdr-copy-")
        for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
            if info.type == pafs.FileType.File:
                target = os.path.join(dest, info.path[len(root):].lstrip("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with fs.open_input_stream(info.path) as src, open(target, "wb") as out:
                    out.write(src.read())
        _LOCAL_COPIES[uri] = dest
    return _LOCAL_COPIES[uri]


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
