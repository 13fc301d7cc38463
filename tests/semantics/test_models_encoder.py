"""Packaged models (offline) and the text encoder: shapes, normalisation, determinism."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from semacdr_dist.semantics.config import EncoderConfig
from semacdr_dist.semantics.engines import SentenceTransformerEncoder
from semacdr_dist.semantics.features import encode_texts
from semacdr_dist.semantics.models import MINILM, SMOLLM2, prepare_models, resolve_model


def test_prepare_models_is_idempotent_and_plain():
    models_dir = os.environ["SEMACDR_MODELS_DIR"]
    paths = prepare_models(models_dir)  # converts on a fresh machine (~20 s), else instant
    t0 = time.perf_counter()
    assert prepare_models(models_dir) == paths
    assert time.perf_counter() - t0 < 1.0
    smol = Path(paths[SMOLLM2])
    assert (smol / "model.safetensors").exists() and (smol / "tokenizer.json").exists()
    config = json.loads((smol / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert "im_start" in (smol / "chat_template.jinja").read_text()
    assert (Path(paths[MINILM]) / "modules.json").exists()
    assert resolve_model("smollm2-135m-instruct", models_dir) == paths[SMOLLM2]
    assert resolve_model("some/hub-model", models_dir) == "some/hub-model"


def test_encoder_shapes_and_determinism(ray_local):
    path = resolve_model("all-MiniLM-L6-v2")
    cfg = EncoderConfig(batch_size=4)
    enc = SentenceTransformerEncoder(path, cfg)
    texts = ["cast iron skillet for searing", "earl grey tea with bergamot", "a patient weekend cook", "x"] * 3
    a, b = enc.encode(texts), enc.encode(texts)
    assert a.shape == (12, 384) and a.dtype == np.float32 and enc.dim == 384
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, 384)
    # MiniLM's own pipeline ends in a Normalize module, so normalize=False changes nothing here
    # beyond rounding: in bf16 (dtype auto on CPUs with native bf16) that module's output is
    # only bf16-normal; our float32 renormalisation moves it by up to ~1e-3.
    raw = SentenceTransformerEncoder(path, EncoderConfig(normalize=False)).encode(texts[:2])
    np.testing.assert_allclose(raw, a[:2], atol=1e-5 if enc.dtype == "float32" else 3e-3)
    # related texts are closer than unrelated ones (the encoder is real)
    assert a[0] @ enc.encode(["heavy frying pan"])[0] > a[1] @ enc.encode(["heavy frying pan"])[0]
    # the same vectors from the Ray Data map the stage encodes features/ with
    np.testing.assert_allclose(encode_texts(texts, path, EncoderConfig(batch_size=4, items_per_call=2)), a, atol=1e-5)


def test_vllm_pooling_encoder_matches_sentence_transformers():
    """encoder.backend=vllm (LLM(runner="pooling").embed) gives the same vectors as the default."""
    import numpy as np

    from semacdr_dist.semantics.config import EncoderConfig
    from semacdr_dist.semantics.engines import make_encoder
    from semacdr_dist.semantics.models import resolve_model

    path = resolve_model(EncoderConfig().model)
    texts = ["a cast iron skillet for searing steak", "organic green tea leaves",
             "a cozy rainy evening with a book"]
    pooled = make_encoder(path, EncoderConfig(backend="vllm")).encode(texts)
    reference = make_encoder(path, EncoderConfig()).encode(texts)
    assert pooled.shape == reference.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-4)
    assert ((pooled * reference).sum(1) > 0.999).all()
    assert (pooled[0] @ pooled[1]) < 0.9  # different texts stay apart
