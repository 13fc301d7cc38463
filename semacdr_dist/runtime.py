"""Opening and closing a Ray session: the one place that calls ``ray.init``.

Library functions take an already-open session (they call Ray APIs and let the
caller decide where Ray runs); the CLI, ``ray_jobs/`` and tests open one with
:func:`ray_session`. Locally, everything binds to 127.0.0.1 and nothing listens
on other interfaces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Engines pick these up at import time; set before anything imports vllm/deepspeed.
# Ray's auth mode is not among them: a local session turns auth off on loopback itself
# (`_loopback_only`), and a cluster keeps whatever its nodes and the job were started with.
CPU_ENGINE_ENV = {
    "DS_ACCELERATOR": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
    # Quieter logs in non-interactive runs (CI, `ray job` logs): progress every minute,
    # vLLM warnings only. Both are defaults; the caller's environment wins.
    "RAY_DATA_NON_TTY_PROGRESS_LOG_INTERVAL": "60",
    "VLLM_LOGGING_LEVEL": "WARNING",
}


class RayConnectError(ConnectionError):
    """The Ray cluster named by ``ray.address`` / RAY_ADDRESS could not be joined."""


@dataclass
class RayConfig:
    """Where Ray runs. ``address=None`` starts a local, loopback-only session."""

    address: str | None = None
    num_cpus: int | None = 4  # >= 4 even on 2 cores: 2 train workers on num_cpus=2 hang
    num_gpus: int | None = None
    object_store_memory_mb: int = 1024
    temp_dir: str | None = None
    include_dashboard: bool = False
    dashboard_port: int = 8265
    env_vars: dict[str, str] = field(default_factory=dict)


def engine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for CPU engines (vLLM, DeepSpeed) plus ``extra``; also applied to os.environ."""
    env = dict(CPU_ENGINE_ENV)
    env.setdefault("VLLM_CACHE_ROOT", os.path.join(tempfile.gettempdir(), "semacdr-vllm-cache"))
    env.update(extra or {})
    for k, v in env.items():
        os.environ.setdefault(k, v)
    # The driver's own default (Ray reads it once, early): auth off unless the caller brought a
    # mode or a token. Never put into the workers' env: a cluster's nodes carry their own.
    if not any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_MODE"] = "disabled"
    return env


def _loopback_only() -> None:
    """Keep a local session on 127.0.0.1.

    Ray rewrites a node address of 127.0.0.1 to the machine's routable address
    (so other nodes could join) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; the
    flag is read when `ray` is imported, so the already-imported constant is set
    too. Child processes (GCS, raylet, workers) inherit the variable.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # Ray starts workers at niceness 15: on a shared laptop every other process then
    # outranks the engines and trainers. A local session is the user's own job.
    os.environ.setdefault("RAY_worker_niceness", "0")
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _job_env_vars() -> dict[str, str]:
    """env_vars of the runtime env of the Ray job this driver runs in ({} outside a job)."""
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    raw = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not raw:
        return {}
    runtime_env = (json.loads(raw).get("runtime_env") or {})
    return dict(runtime_env.get("env_vars") or {})


@contextlib.contextmanager
def ray_session(cfg: RayConfig | None = None) -> Iterator[None]:
    """Open Ray (local loopback-only, or connect to ``cfg.address``) and shut it down after.

    If Ray is already initialised (a test session, a Ray job's driver), it is
    reused and left open.
    """
    import ray

    cfg = cfg or RayConfig()
    env = engine_env(cfg.env_vars)
    if ray.is_initialized():
        yield
        return
    kwargs: dict = {
        "runtime_env": {"env_vars": env},
        "log_to_driver": True,
        "configure_logging": True,
        "logging_level": logging.WARNING,
    }
    # Inside `ray job submit` the driver finds its cluster through RAY_ADDRESS.
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        kwargs["address"] = address
        # Inside `ray job submit --runtime-env ...` Ray merges the job's runtime env with
        # ours and refuses any key both set: the job's (the operator's) wins, ours fills gaps.
        job_env = _job_env_vars()
        kwargs["runtime_env"] = {"env_vars": {k: v for k, v in env.items() if k not in job_env}}
    else:
        _loopback_only()
        temp_dir = cfg.temp_dir or tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        kwargs.update(
            num_cpus=cfg.num_cpus,
            num_gpus=cfg.num_gpus,
            object_store_memory=cfg.object_store_memory_mb * 1024 * 1024,
            include_dashboard=cfg.include_dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=cfg.dashboard_port,
            _node_ip_address="127.0.0.1",
            _temp_dir=temp_dir,
        )
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError) as err:
        if not address:
            raise
        text, inner = str(err), err.__cause__ or err.__context__
        while inner is not None:  # Ray wraps the auth failure: read the whole chain
            text, inner = f"{text}\n{inner}", inner.__cause__ or inner.__context__
        if "InvalidAuthToken" in text or "Unauthenticated" in text or "token" in text.lower():
            why = ("the cluster rejected this client's auth token: set RAY_AUTH_MODE=token and the "
                   "cluster's token in RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)")
        else:
            why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RayConnectError(f"could not connect to the Ray cluster at {address}: {why}") from err
    log.info("ray session: %s", ray.cluster_resources())
    try:
        yield
    finally:
        ray.shutdown()
