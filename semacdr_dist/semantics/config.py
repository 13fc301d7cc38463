"""Configuration of the semantics stage (Hydra groups `llm` and `encoder`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LLMConfig:
    backend: str = "vllm"  # vllm | hf
    model: str = "smollm2-135m-instruct"


@dataclass
class EncoderConfig:
    backend: str = "sentence_transformers"  # sentence_transformers | vllm
    model: str = "all-MiniLM-L6-v2"
