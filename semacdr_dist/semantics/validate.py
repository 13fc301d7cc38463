"""Validation of generated views and the content-derived fallback.

A view that breaks a rule is resampled; after ``max_retries`` the fallback
(built from the item's own content, never empty) replaces it with
``fallback=true``. Rules, in the order they are checked:

- ``empty``: nothing but whitespace / punctuation;
- ``truncated``: generation hit ``max_tokens`` and no complete sentence of at
  least ``min_words`` words is left after cutting the unfinished tail;
- ``too_short`` / ``over_long``: outside ``[min_words, max_words]`` words;
- ``repetition``: a word n-gram occurs more than ``max_ngram_repeats`` times;
- ``prompt_echo``: a word n-gram of the prompt's instructions appears verbatim;
- ``prompt_injection``: the view carries instructions: it reads like one ("ignore the
  previous instructions", "you are now ...", "system prompt") or repeats a 4-word
  n-gram of instruction-like text planted in the item's own title or description;
- ``names_domain`` (agnostic view only): the domain name or the product type
  (leaf category) appears;
- ``unfaithful``: encoder cosine with the item content below the view's floor
  (checked by the caller, which holds the encoder).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from semacdr_dist.semantics.config import LLMConfig

_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$|[\"')\]])")
_STOP = {
    "a", "an", "and", "the", "of", "for", "with", "to", "in", "on", "by", "or", "is", "at",
    "from", "pack", "oz", "ounce", "ounces", "count", "inch", "lb", "set", "new", "x",
}  # fmt: skip


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _singular(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def banned_terms(item: dict[str, Any]) -> set[str]:
    """Words an agnostic view must not use: the domain name and the leaf category's words."""
    terms = {_singular(w) for w in words(str(item.get("domain") or "")) if len(w) > 2}
    cats = item.get("categories") or []
    if len(cats) > 0 and cats[-1]:
        terms |= {_singular(w) for w in words(str(cats[-1])) if len(w) > 2 and w not in _STOP}
    return terms


def clean(text: str, finish_reason: str, keep_truncated: bool = False) -> str:
    """Strip whitespace/quotes; cut an unfinished tail if generation hit the token limit.

    A truncated text with no complete sentence becomes "" (-> "truncated"), or with
    ``keep_truncated`` loses only its last word, which may be cut mid-token.
    """
    text = text.strip().strip('"').strip()
    text = re.sub(r"\s+", " ", text)
    if finish_reason == "length":
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if ends:
            text = text[: ends[-1]]
        else:
            text = text.rsplit(" ", 1)[0].rstrip(",;:-–—(") if keep_truncated and " " in text else ""
    return text.strip()


def _max_ngram_count(ws: list[str], n: int) -> int:
    if len(ws) < n:
        return 0
    return max(Counter(tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)).values())


# Text that addresses the model instead of describing a product.
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.!?]{0,40}\b(previous|above|prior|earlier|all|any|your)\b"
    r"[^.!?]{0,30}\b(instructions?|prompts?|rules?|directions?|guidelines?)\b"
    r"|\byou are now\b|\bsystem prompt\b|\bas an ai\b|\bnew instructions?\b"
    r"|\b(respond|reply|answer|output)\s+(only\s+)?with\b",
    re.IGNORECASE,
)
INJECTION_NGRAM = 4


def injected_spans(item: dict[str, Any]) -> list[str]:
    """Sentences of the item's title and description that read like instructions to a model."""
    spans = []
    for field in ("title", "description"):
        for sentence in re.split(r"(?<=[.!?])\s+", str(item.get(field) or "")):
            if _INJECTION.search(sentence):
                spans.append(sentence)
    return spans


def strip_injection(text: str) -> str:
    """``text`` minus its instruction-like sentences (the fallback must not repeat them)."""
    kept = [s for s in re.split(r"(?<=[.!?])\s+", text) if not _INJECTION.search(s)]
    return " ".join(kept).strip()


def echoes_injection(text: str, item: dict[str, Any]) -> bool:
    if _INJECTION.search(text):
        return True
    def bare(t: str) -> list[str]:  # quotes around planted words ('BUY NOW') must not hide them
        return [w.strip("'") for w in words(t) if w.strip("'")]

    grams = set()
    for span in injected_spans(item):
        grams |= echo_ngrams(bare(span), INJECTION_NGRAM)
    ws = bare(text)
    return bool(grams) and any(tuple(ws[i : i + INJECTION_NGRAM]) in grams
                               for i in range(len(ws) - INJECTION_NGRAM + 1))


def check_view(
    text: str,
    view: str,
    item: dict[str, Any],
    cfg: LLMConfig,
    echo_grams: set[tuple[str, ...]],
) -> str | None:
    """The first rule ``text`` (already cleaned) breaks, or None when it is acceptable."""
    ws = words(text)
    if not ws:
        return "empty"
    if len(ws) < cfg.min_words:
        return "too_short"
    if len(ws) > cfg.max_words:
        return "over_long"
    if _max_ngram_count(ws, cfg.repeat_ngram) > cfg.max_ngram_repeats:
        return "repetition"
    n = cfg.echo_ngram
    if echo_grams and any(tuple(ws[i : i + n]) in echo_grams for i in range(len(ws) - n + 1)):
        return "prompt_echo"
    if echoes_injection(text, item):
        return "prompt_injection"
    if view == "agnostic" and any(_is_banned(w, banned_terms(item)) for w in ws):
        return "names_domain"
    return None


def _is_banned(word: str, banned: set[str]) -> bool:
    """Exact (singularised) match, or a compound containing a banned term ("kitchenaid")."""
    w = _singular(word)
    return w in banned or any(len(b) > 3 and b in w for b in banned)


def echo_ngrams(instruction_words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(instruction_words[i : i + n]) for i in range(len(instruction_words) - n + 1)}


def fallback_text(view: str, item: dict[str, Any], cfg: LLMConfig) -> str:
    """A deterministic view made from the item's content (used when generation keeps failing).

    specific: title, product type and brand, plus the description's first sentence.
    agnostic: the content's salient words minus the domain / product-type words.
    """
    title = strip_injection(str(item.get("title") or "").strip())
    cats = [str(c) for c in (item.get("categories") or []) if c]
    brand = str(item.get("brand") or "").strip()
    desc = strip_injection(str(item.get("description") or "").strip())
    if view == "specific":
        parts = [title or "An item"]
        if cats:
            parts.append(f"a {cats[-1].lower()} product")
        if brand:
            parts.append(f"by {brand}")
        text = ", ".join(parts) + "."
        first = _SENTENCE_END.split(desc, maxsplit=1)[0].strip() if desc else ""
        if first:
            text += f" {first}."
        return " ".join(text.split()[: cfg.max_words])
    # Description words first (they say what the item does for someone), then the rest;
    # never the domain / product type, nor the brand.
    banned = banned_terms(item) | {_singular(w) for w in words(brand) if len(w) > 3}
    seen: list[str] = []
    for w in words(f"{desc} {' '.join(cats[:-1])} {title}"):
        if len(w) > 3 and w not in _STOP and not w.isdigit() and not _is_banned(w, banned) and w not in seen:
            seen.append(w)
    keywords = seen[:8] or ["quality", "comfort", "everyday", "enjoyment"]
    return f"For someone who values {', '.join(keywords)}."
