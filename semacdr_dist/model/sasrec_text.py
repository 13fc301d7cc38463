"""SASRec whose item tower adds the frozen content-text vector (through an adapter) to the ID."""

from __future__ import annotations

from semacdr_dist.model.sasrec import SASRec


class SASRecText(SASRec):
    """SASRec + `model.text_view` features (default: the item's content embedding);
    `model.use_id_embedding=false` makes it a pure text model."""

    def views(self) -> list[str]:
        return [self.cfg.text_view]
