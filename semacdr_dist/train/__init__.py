"""The train stage: each model on Ray Train + DeepSpeed, then its export.

Owns: `run_train(TrainStageConfig, run)` (sequences/, features/ -> checkpoints/,
train/<model>/, export/<model>/), `TrainConfig` and the DeepSpeed JSON rendered from it,
the worker loop, checkpoint discovery and in-process validation (`scoring`).
May import: `data`, `model`, `semantics.features` (the reader of features/),
`evaluate.metrics` (the one ranking protocol) and the foundation modules; never the
top-level config.
"""
