"""The item catalog as the models and the evaluator see it: ids, domains, nothing else.

Held as two small arrays (1 byte per item for the domain), so it fits in every
worker even for 10M items; the item text stays in the `items/` parquet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from semacdr_dist.rundir import RunDir


@dataclass
class Catalog:
    n_items: int
    domains: list[str]  # ordered: a domain's index is its position here
    item_domain: np.ndarray  # int8 [n_items], domain index of each global item id

    def __post_init__(self) -> None:
        self.item_domain = np.asarray(self.item_domain, dtype=np.int8)
        if self.item_domain.shape != (self.n_items,):
            raise ValueError(f"item_domain has shape {self.item_domain.shape}, expected ({self.n_items},)")
        if self.n_items and (self.item_domain.min() < 0 or self.item_domain.max() >= len(self.domains)):
            raise ValueError(f"item_domain holds indices outside 0..{len(self.domains) - 1}")

    def domain_index(self, name: str) -> int:
        try:
            return self.domains.index(name)
        except ValueError:
            raise KeyError(f"unknown domain {name!r}; the catalog has {self.domains}") from None

    def domain_items(self, domain: int | str) -> np.ndarray:
        """Global item ids of one domain, ascending."""
        d = self.domain_index(domain) if isinstance(domain, str) else domain
        return np.flatnonzero(self.item_domain == d)

    def to_dict(self) -> dict:
        return {"n_items": self.n_items, "domains": list(self.domains)}


def load_catalog(run: RunDir) -> Catalog:
    """Catalog of a prepared run (`stats.json` domains + the `items/` shards' ids and domains)."""
    domains = list(run.read_json("stats.json")["domains"])
    index = {d: i for i, d in enumerate(domains)}
    ids, doms = [], []
    for name, table in run.iter_tables("items", columns=["item_id", "domain"]):
        unknown = set(pc.unique(table["domain"]).to_pylist()) - set(index)
        if unknown:
            raise ValueError(f"items/{name}: domains {sorted(unknown)} are not in stats.json {domains}")
        ids.append(table["item_id"].to_numpy())
        doms.append(np.array([index[d] for d in table["domain"].to_pylist()], dtype=np.int8))
    if not ids:
        raise FileNotFoundError(f"no items under {run.uri_of('items')}: run the prepare stage first")
    item_id = np.concatenate(ids)
    n = int(item_id.max()) + 1
    if len(item_id) != n or len(np.unique(item_id)) != n:
        raise ValueError(f"items/ ids are not dense 0..{n - 1} ({len(item_id)} rows)")
    item_domain = np.empty(n, dtype=np.int8)
    item_domain[item_id] = np.concatenate(doms)
    return Catalog(n_items=n, domains=domains, item_domain=item_domain)
