"""Prompts, item texts and the keys that make views resumable and cacheable."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from semacdr_dist.semantics.config import LLMConfig, ViewPrompt

_DESC_CHARS = 600  # description characters shown to the LLM (prompt stays < ~300 tokens)


def _field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " > ".join(str(v) for v in value if v)
    return str(value).strip()


def content_text(item: dict[str, Any]) -> str:
    """The item's own content: title, categories, brand, description (what gets embedded)."""
    parts = [_field(item.get("title"))]
    cats = _field(item.get("categories"))
    if cats:
        parts.append(f"Categories: {cats}")
    brand = _field(item.get("brand"))
    if brand:
        parts.append(f"Brand: {brand}")
    desc = _field(item.get("description"))
    if desc:
        parts.append(desc)
    return ". ".join(p.rstrip(".") for p in parts if p) + "."


def item_fields(item: dict[str, Any]) -> dict[str, str]:
    """Template fields; empty ones read "unknown" so a template never shows a blank."""
    desc = _field(item.get("description"))[:_DESC_CHARS]
    return {
        "title": _field(item.get("title")) or "unknown",
        "domain": _field(item.get("domain")) or "unknown",
        "categories": _field(item.get("categories")) or "unknown",
        "brand": _field(item.get("brand")) or "unknown",
        "description": desc or "unknown",
    }


def render_messages(prompt: ViewPrompt, item: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages for one item and one view."""
    try:
        user = prompt.user.format(**item_fields(item))
    except (KeyError, IndexError) as err:
        raise ValueError(
            f"prompt template uses an unknown placeholder {err}; allowed: "
            "{title} {domain} {categories} {brand} {description}"
        ) from err
    msgs = [{"role": "system", "content": prompt.system}] if prompt.system else []
    return msgs + [{"role": "user", "content": user}]


def sampling_dict(cfg: LLMConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "repetition_penalty": cfg.repetition_penalty,
    }
    if cfg.stop:  # only when set: keys of views made without stop strings stay valid
        out["stop"] = list(cfg.stop)
    return out


def prompt_sha(cfg: LLMConfig, view: str) -> str:
    """Key of one view's generation recipe: template + model + sampling parameters."""
    prompt: ViewPrompt = getattr(cfg.prompts, view)
    blob = json.dumps(
        {
            "view": view,
            "system": prompt.system,
            "user": prompt.user,
            "model": cfg.model,
            "sampling": sampling_dict(cfg),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_hash(domain: str, raw_id: str, text: str) -> str:
    """Portable item key for the view cache: same item content -> same hash on any run."""
    return hashlib.sha256(json.dumps([domain, raw_id, text]).encode()).hexdigest()[:24]


def instruction_words(prompt: ViewPrompt) -> list[str]:
    """The fixed words of a prompt (placeholders removed), for the prompt-echo rule."""
    import re

    text = re.sub(r"\{[a-z_]+\}", " ", f"{prompt.system} {prompt.user}")
    return re.findall(r"[a-z0-9']+", text.lower())
