"""The train stage: each model on Ray Train + DeepSpeed, then its export.

Owns: `run_train(TrainStageConfig, run)` (sequences/, features/ -> checkpoints/,
train/<model>/, export/<model>/), `TrainConfig` and the DeepSpeed JSON rendered from it,
the worker loop, checkpoint discovery, in-process validation (`scoring`) and the carry
(`carry`: an unfinished run as safetensors + JSON, to resume it on another machine).
May import: `data`, `model`, `semantics.features` (the reader of features/),
`evaluate.metrics` (the one ranking protocol) and the foundation modules; never the
top-level config.
"""
