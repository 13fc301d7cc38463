"""Prompts, keys and validation rules (pure logic, no engine)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from semacdr_dist.semantics.config import LLMConfig, Prompts, ViewPrompt
from semacdr_dist.semantics.prompts import (
    content_hash,
    content_text,
    instruction_words,
    prompt_sha,
    render_messages,
)
from semacdr_dist.semantics.validate import (
    banned_terms,
    check_view,
    clean,
    echo_ngrams,
    fallback_text,
    words,
)

ITEM = {
    "item_id": 3,
    "domain": "kitchen",
    "raw_id": "B01",
    "title": "Lodge Cast Iron Skillet, 10.25 inch",
    "categories": ["Home", "Cookware", "Skillets"],
    "brand": "Lodge",
    "description": "Pre-seasoned cast iron pan for searing, sauteing, baking and campfire cooking.",
}


def _echo(cfg: LLMConfig, view: str):
    return echo_ngrams(instruction_words(getattr(cfg.prompts, view)), cfg.echo_ngram)


def test_prompt_sha_tracks_template_model_and_sampling():
    cfg = LLMConfig()
    base = {v: prompt_sha(cfg, v) for v in ("specific", "agnostic")}
    assert base == {v: prompt_sha(LLMConfig(), v) for v in ("specific", "agnostic")}
    assert base["specific"] != base["agnostic"]
    changed = replace(cfg, prompts=Prompts(agnostic=ViewPrompt(user="Who likes {title}?")))
    assert prompt_sha(changed, "specific") == base["specific"]
    assert prompt_sha(changed, "agnostic") != base["agnostic"]
    for other in (replace(cfg, model="x"), replace(cfg, temperature=0.1), replace(cfg, max_tokens=9)):
        assert prompt_sha(other, "specific") != base["specific"]


def test_render_and_content_text():
    msgs = render_messages(LLMConfig().prompts.specific, ITEM)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "Lodge Cast Iron Skillet" in msgs[1]["content"] and "kitchen" in msgs[1]["content"]
    agn = render_messages(LLMConfig().prompts.agnostic, ITEM)[1]["content"]
    assert "kitchen" not in agn.lower()  # the agnostic prompt does not even tell the domain
    assert content_text(ITEM).startswith("Lodge Cast Iron Skillet") and "Cookware > Skillets" in content_text(ITEM)
    assert content_text({**ITEM, "brand": None, "categories": None, "description": None}) == "Lodge Cast Iron Skillet, 10.25 inch."
    with pytest.raises(ValueError, match="unknown placeholder"):
        render_messages(ViewPrompt(user="{price}"), ITEM)
    assert content_hash("kitchen", "B01", "x") != content_hash("kitchen", "B02", "x")


@pytest.mark.parametrize(
    ("text", "view", "rule"),
    [
        ("", "specific", "empty"),
        ("A pan.", "specific", "too_short"),
        (" ".join(["word"] * 61), "specific", None),  # repetition is checked after length
        ("great pan " * 40, "specific", "over_long"),
        ("it is good it is good it is good it is good", "specific", "repetition"),
        ("In at most 30 words, say what this product is and what it is used for.", "specific", "prompt_echo"),
        ("Someone who loves hearty home cooking in their kitchen on weekends.", "agnostic", "names_domain"),
        ("Someone who owns a KitchenAid and bakes bread every weekend morning.", "agnostic", "names_domain"),
        ("Someone who likes cast iron skillets for weekend cooking.", "agnostic", "names_domain"),
        ("A patient person who enjoys slow weekends, campfires and hearty shared meals.", "agnostic", None),
        ("A heavy pre-seasoned cast iron skillet for searing and baking.", "specific", None),
    ],
)
def test_check_view_rules(text, view, rule):
    cfg = LLMConfig()
    got = check_view(clean(text, "stop"), view, ITEM, cfg, _echo(cfg, view))
    if text.startswith("word"):
        assert got in ("over_long", "repetition")
    else:
        assert got == rule


def test_clean_cuts_unfinished_tail():
    assert clean('  "A sturdy pan for searing. It also bakes corn', "length") == "A sturdy pan for searing."
    assert clean("A sturdy pan for searing and baking bread on", "length") == ""
    assert clean("No final period", "stop") == "No final period"


def test_keep_truncated_drops_only_the_cut_word():
    # A finished sentence inside the text still wins; otherwise the partial last word goes.
    assert clean("A sturdy pan. It also bakes corn", "length", keep_truncated=True) == "A sturdy pan."
    assert clean("A sturdy pan for searing and baking bre", "length", keep_truncated=True) == (
        "A sturdy pan for searing and baking"
    )
    assert clean("A sturdy pan for searing, bak", "length", keep_truncated=True) == "A sturdy pan for searing"
    assert clean("Unbroken", "length", keep_truncated=True) == ""  # nothing left -> "truncated"


def test_stop_strings_cut_like_vllm_and_key_the_views():
    from semacdr_dist.semantics.engines import cut_at_stop
    from semacdr_dist.semantics.prompts import prompt_sha, sampling_dict

    stops = [". ", "! ", "\n"]
    assert cut_at_stop("A pan for eggs. Also bread!", stops) == ("A pan for eggs", True)
    assert cut_at_stop("Line one\nLine two. x", stops) == ("Line one", True)
    assert cut_at_stop("No stop here.", stops) == ("No stop here.", False)
    plain, stopped = LLMConfig(), LLMConfig(stop=stops)
    assert "stop" not in sampling_dict(plain)  # views made before stop strings keep their keys
    assert sampling_dict(stopped)["stop"] == stops
    assert prompt_sha(plain, "specific") != prompt_sha(stopped, "specific")


def test_fallbacks_are_never_empty_and_agnostic_avoids_the_domain():
    cfg = LLMConfig()
    spec = fallback_text("specific", ITEM, cfg)
    assert spec.startswith("Lodge Cast Iron Skillet") and "skillets product" in spec
    agn = fallback_text("agnostic", ITEM, cfg)
    assert agn and check_view(agn, "agnostic", ITEM, cfg, _echo(cfg, "agnostic")) is None
    bare = {"item_id": 1, "domain": "food", "raw_id": "x", "title": "Food", "categories": None, "brand": None, "description": None}
    assert words(fallback_text("agnostic", bare, cfg)) and "food" not in fallback_text("agnostic", bare, cfg)
    assert banned_terms(ITEM) == {"kitchen", "skillet"}
