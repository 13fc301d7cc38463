"""`semacdr-dist`: the one command-line entry point.

    semacdr-dist pipeline [hydra overrides...]    # every stage, in order
    semacdr-dist prepare|semantics|train|evaluate [overrides...]
    semacdr-dist report [overrides...] [--runs DIR ...]
    semacdr-dist models prepare [models_dir=...]
    semacdr-dist config [overrides...]             # print the composed config

A failure prints one line naming the key or file, the value and the rule;
add --verbose (or set HYDRA_FULL_ERROR=1) for the traceback.

Every key of `configs/` is overridable, e.g.
`semacdr-dist pipeline data=food_kitchen llm=smollm2_cpu train.num_workers=2`.
The config is composed with Hydra's compose API (no working-directory change),
validated against the typed dataclasses, and saved as `<run_dir>/config.yaml`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from omegaconf import OmegaConf

from semacdr_dist.config import Config, load_config
from semacdr_dist.errors import is_config_error, one_line
from semacdr_dist.pipeline import STAGES, PipelineResult, run_pipeline, summary_table
from semacdr_dist.rundir import StageIncomplete

log = logging.getLogger("semacdr_dist")
COMMANDS = (*STAGES, "pipeline", "report", "models", "config")


def _usage() -> str:
    return __doc__ or ""


def _run_stages(cfg: Config, stages: tuple[str, ...]) -> int:
    try:
        result = run_pipeline(cfg, stages=stages)  # measures its own wall time and peak RSS
    except StageIncomplete as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 3
    _print_summary(result)
    return 0


def _print_summary(result: PipelineResult) -> None:
    print()
    print(summary_table(result))
    print()
    print(f"run directory: {result.run_dir}")
    if result.report:
        print(f"report: {result.report}")
    print(f"wall time: {result.wall_seconds:.1f}s, peak RSS (process tree): {result.peak_tree_rss_gib:.2f} GiB")


def _report(cfg: Config, runs: list[str]) -> int:
    from semacdr_dist.evaluate.report import compare

    out = compare([cfg.run_dir, *runs], cfg.run_dir)
    for kind, path in out.get("paths", {}).items():
        print(f"{kind}: {path}")
    return 0


def _models(args: list[str]) -> int:
    if not args or args[0] != "prepare":
        print("usage: semacdr-dist models prepare [models_dir=DIR]", file=sys.stderr)
        return 2
    cfg = load_config([a for a in args[1:]])
    from semacdr_dist.semantics.models import prepare_models

    paths = prepare_models(cfg.models_dir)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; a failure prints one line naming what broke (``--verbose``: the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"
    argv = [a for a in argv if a != "--verbose"]
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if verbose:
            raise
        print(f"error: {one_line(err)}  [--verbose for the traceback]", file=sys.stderr)
        return 2 if is_config_error(err) else 1


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asked_help = bool(argv) and argv[0] in ("-h", "--help", "help")
    if asked_help or not argv or argv[0] not in COMMANDS:
        unknown = bool(argv) and not asked_help
        print(_usage(), file=sys.stderr if unknown else sys.stdout)
        return 0 if asked_help else 2
    command, rest = argv[0], argv[1:]
    if command == "models":
        return _models(rest)
    runs: list[str] = []
    if "--runs" in rest:
        i = rest.index("--runs")
        runs, rest = rest[i + 1 :], rest[:i]
    cfg = load_config(rest)
    if command == "config":
        print(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        return 0
    if command == "report":
        return _report(cfg, runs)
    stages = STAGES if command == "pipeline" else (command,)
    return _run_stages(cfg, stages)


def run(command: str) -> NoReturn:
    """One command with this process's arguments, then exit: the body of ``ray_jobs/<stage>.py``
    (``python ray_jobs/train.py data=amazon ...`` = ``semacdr-dist train data=amazon ...``)."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
