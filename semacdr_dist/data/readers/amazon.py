"""Reader of Amazon review dumps: one reviews + metadata JSON-lines pair per domain.

Layouts (gzip or plain, read as a stream, never held whole):

* 2018 (McAuley et al.): reviews ``reviewerID, asin, unixReviewTime`` (seconds);
  metadata ``asin, title, category, brand, description``.
* 2023 (Hou et al.): reviews ``user_id, parent_asin, timestamp`` (milliseconds,
  kept as given: only the order matters); metadata ``parent_asin, title,
  categories, store`` (or ``details.Brand``), ``description``.

Item ids are assigned in metadata order over the domains; user ids in order of
first appearance over all review files, so a user who reviewed in two domains
is one user. Both maps are the reader's only state: :class:`CompactIds`, ~16 bytes
per key instead of a dict's ~150 (10M items + 10M users: ~0.3 GB, not ~3 GB).
"""

from __future__ import annotations

import array
import bisect
import hashlib
import json
import os
from collections.abc import Iterator

import numpy as np
import pyarrow.fs as pafs

from semacdr_dist.data.config import AmazonDomainConfig
from semacdr_dist.data.readers.base import (
    ROW_COL,
    RULE_DUPLICATE_ITEM,
    RULE_TIMESTAMP,
    RULE_UNKNOWN_ITEM,
    Chunk,
    ReaderOutput,
    check_items,
    check_timestamps,
    collect,
    interactions_table,
    items_table,
    parse_timestamp,
    rejected_rows,
)
from semacdr_dist.data.schemas import DataValidationError

LAYOUTS = {
    "2018": {"user": "reviewerID", "item": "asin", "time": "timestamp_s", "meta_item": "asin"},
    "2023": {"user": "user_id", "item": "parent_asin", "time": "timestamp_ms", "meta_item": "parent_asin"},
}
REVIEW_TIME = {"2018": "unixReviewTime", "2023": "timestamp"}
RULE_JSON = "line must be a JSON object (UTF-8)"


class CompactIds:
    """A str -> int map at ~16 bytes per key: 64-bit BLAKE2b hashes in a sorted array, plus a
    dict (~100 B per entry) of up to ``merge_every`` keys added since the last merge.

    Two keys whose hashes collide count as one (probability ~n^2 / 2^65: ~3e-6 at 10M keys).
    The sorted part is an ``array.array`` searched with :mod:`bisect` (~2 us a lookup, a
    numpy scalar search costs several): catalogs under ``merge_every`` keys never pay it.
    """

    def __init__(self, merge_every: int = 2_000_000):
        self._hashes = array.array("Q")
        self._values = array.array("q")
        self._new: dict[int, int] = {}
        self._merge_every = merge_every

    def __len__(self) -> int:
        return len(self._hashes) + len(self._new)

    @staticmethod
    def _hash(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")

    def _find(self, h: int) -> int | None:
        v = self._new.get(h)
        if v is not None:
            return v
        i = bisect.bisect_left(self._hashes, h)
        return self._values[i] if i < len(self._hashes) and self._hashes[i] == h else None

    def get(self, key: str) -> int | None:
        return self._find(self._hash(key))

    def setdefault(self, key: str, value: int) -> int:
        h = self._hash(key)
        found = self._find(h)
        if found is not None:
            return found
        self._new[h] = value
        if len(self._new) >= self._merge_every:
            self._merge()
        return value

    def _merge(self) -> None:
        hashes = np.concatenate([np.frombuffer(self._hashes, np.uint64), np.fromiter(self._new.keys(), np.uint64, len(self._new))])
        values = np.concatenate([np.frombuffer(self._values, np.int64), np.fromiter(self._new.values(), np.int64, len(self._new))])
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._values, self._new = array.array("Q", hashes[order].tobytes()), array.array("q", values[order].tobytes()), {}


def _missing(field: str) -> str:
    return f"missing field '{field}'"


def iter_json_lines(path: str) -> Iterator[tuple[int, dict | None, str]]:
    """(line, record or None when not a JSON object, raw line) of a JSON-lines file, .gz or plain.

    ``line`` is the 1-based line number an editor shows (blank lines count, and are skipped).
    """
    fs, p = pafs.FileSystem.from_uri(path if "://" in path else os.path.abspath(path))
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise DataValidationError(path, None, "file not found")
    compression = "gzip" if p.endswith(".gz") else None
    with fs.open_input_stream(p, compression=compression) as raw:
        row, rest = 0, b""  # row: lines read so far
        while True:
            try:
                block = raw.read(1 << 22)
            except (OSError, EOFError) as err:  # a cut-off download: name the file, not just zlib
                raise DataValidationError(path, None, "truncated or corrupt compressed file",
                                          f"{err}; after row {row}") from err
            if not block:
                break
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                row += 1
                if line.strip():
                    yield row, *_parse(line)
        if rest.strip():
            yield row + 1, *_parse(rest)


def _parse(line: bytes) -> tuple[dict | None, str]:
    text = line.decode("utf-8", "surrogateescape")  # invalid bytes become lone surrogates
    try:
        rec = json.loads(text)
    except ValueError:
        return None, _safe(text)[:500]
    return (rec if isinstance(rec, dict) else None), _safe(text)[:500]


def _safe(s: str) -> str:
    return s.encode("utf-8", "replace").decode("utf-8")


def _text(value) -> str | None:
    """A field as UTF-8 text: lists are joined; None when it holds invalid UTF-8."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if v)
    s = str(value).strip()
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return s


def _brand(rec: dict, layout: str) -> str:
    if layout == "2018":
        return _safe(str(rec.get("brand") or ""))
    details = rec.get("details") if isinstance(rec.get("details"), dict) else {}
    return _safe(str(rec.get("store") or details.get("Brand") or details.get("brand") or ""))


def iter_amazon(domains: list[AmazonDomainConfig], layout: str, chunk_rows: int = 250_000) -> Iterator[Chunk]:
    """Item chunks of every domain's metadata, then interaction chunks of every reviews file."""
    if layout not in LAYOUTS:
        raise ValueError(f"Amazon layout must be 2018 or 2023, got {layout!r}")
    keys = LAYOUTS[layout]
    item_ids = CompactIds()  # "<domain>\0<asin>" -> item id: an asin is an item per domain
    next_item = 0
    for dom in domains:
        if not dom.name or not dom.reviews or not dom.metadata:
            raise ValueError(f"each data.domains entry needs name, reviews and metadata; got {dom}")
        cols: dict[str, list] = {k: [] for k in ("item_id", "domain", "raw_id", "title", "categories", "brand", "description", ROW_COL)}
        bad: list[tuple[int, str, str]] = []

        def flush(cols=cols, bad=bad, file=dom.metadata):
            return _flush_chunk("items", file, check_items(items_table(cols), file), cols, bad)

        for row, rec, line in iter_json_lines(dom.metadata):
            if rec is None:
                bad.append((row, RULE_JSON, line))
                continue
            asin = rec.get(keys["meta_item"])
            if not asin:
                bad.append((row, _missing(keys["meta_item"]), line))
                continue
            asin = _safe(str(asin))
            if item_ids.setdefault(f"{dom.name}\0{asin}", next_item) != next_item:
                bad.append((row, RULE_DUPLICATE_ITEM, line))
                continue
            cats = rec.get("category" if layout == "2018" else "categories") or []
            cols["item_id"].append(next_item)
            cols["domain"].append(dom.name)
            cols["raw_id"].append(asin)
            cols["title"].append(_text(rec.get("title")))
            cols["categories"].append([_safe(str(c)) for c in cats] if isinstance(cats, list) else [_safe(str(cats))])
            cols["brand"].append(_brand(rec, layout))
            cols["description"].append(_safe(_text(rec.get("description")) or ""))
            cols[ROW_COL].append(row)
            next_item += 1
            if len(cols["item_id"]) >= chunk_rows:
                yield flush()
        yield flush()

    users = CompactIds()
    for dom in domains:
        buf: dict[str, list] = {"user_id": [], "item_id": [], "domain": [], "timestamp": [], ROW_COL: []}
        bad = []

        def flush_reviews(buf=buf, bad=bad, file=dom.reviews):
            return _flush_chunk("interactions", file, check_timestamps(interactions_table(buf), file), buf, bad)

        for row, rec, line in iter_json_lines(dom.reviews):
            if rec is None:
                bad.append((row, RULE_JSON, line))
                continue
            missing = [f for f in (keys["user"], keys["item"], REVIEW_TIME[layout]) if rec.get(f) in (None, "")]
            if missing:
                bad.append((row, _missing(missing[0]), line))
                continue
            ts = parse_timestamp(rec[REVIEW_TIME[layout]])
            if ts is None:
                bad.append((row, RULE_TIMESTAMP, line))
                continue
            item = item_ids.get(f"{dom.name}\0{_safe(str(rec[keys['item']]))}")
            if item is None:  # rejected here, where the raw line still holds the asin
                bad.append((row, RULE_UNKNOWN_ITEM, line))
                continue
            user = _safe(str(rec[keys["user"]]))
            buf["user_id"].append(users.setdefault(user, len(users)))
            buf["item_id"].append(item)
            buf["domain"].append(dom.name)
            buf["timestamp"].append(ts)
            buf[ROW_COL].append(row)
            if len(buf["user_id"]) >= chunk_rows:
                yield flush_reviews()
        yield flush_reviews()


def read_amazon(domains: list[AmazonDomainConfig], layout: str) -> ReaderOutput:
    """Items and interactions of all domains; stops at the first bad row."""
    return collect(iter_amazon(domains, layout))


def _flush_chunk(kind: str, file: str, checked, cols: dict[str, list], bad: list[tuple[int, str, str]]) -> Chunk:
    """One chunk from the checked columns plus the rows rejected while parsing; clears the buffers."""
    good, rej = checked
    pre = rejected_rows(file, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad]) if bad else None
    for v in cols.values():
        v.clear()
    bad.clear()
    if pre is not None:
        import pyarrow as pa

        rej = pre if rej is None else pa.concat_tables([pre, rej])
    return Chunk(kind, file, good, rej)
