"""The semantics stage: LLM views of every item, then their vectors.

Owns: `run_semantics(SemanticsStageConfig, run)` (items/ -> views/, features/,
semantics/report.json), its config (`LLMConfig`, `EncoderConfig`), the engines (vLLM,
transformers, sentence-transformers), prompt rendering and view validation, the engine
actors (Ray restarts them) and the features/ format with its reader `load_feature_matrices`.
May import: `data` and the foundation modules; never the top-level config.
"""
