"""cluster/: the launcher YAML, the KubeRay RayJob and the runtime env parse, carry
the keys Ray needs, and point at entry points that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"


def _entrypoints(command: str) -> list[str]:
    return re.findall(r"(ray_jobs/[\w/]+\.py)", command)


def test_runtime_env():
    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert set(env) <= {"excludes", "env_vars", "pip", "working_dir", "py_modules", "conda"}
    assert ".venv/" in env["excludes"]
    assert all(isinstance(v, str) for v in env["env_vars"].values())


def test_cluster_launcher_yaml():
    spec = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type",
                "head_start_ray_commands", "worker_start_ray_commands", "setup_commands"):
        assert key in spec, key
    types = spec["available_node_types"]
    assert spec["head_node_type"] in types
    assert any(t.get("resources", {}).get("GPU", 0) > 0 for t in types.values()), "no GPU workers"
    assert any(t.get("resources", {}).get("GPU", 0) == 0 and t.get("resources", {}).get("CPU", 0) > 0
               for t in types.values()), "no CPU workers"
    head_cmd = " ".join(spec["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmd


def test_kuberay_rayjob():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["apiVersion"].startswith("ray.io/") and job["kind"] == "RayJob"
    spec = job["spec"]
    entry = _entrypoints(spec["entrypoint"])
    assert entry and all((REPO / e).is_file() for e in entry)
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    groups = cluster["workerGroupSpecs"]
    assert any("nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
               for g in groups)
    yaml.safe_load(spec["runtimeEnvYAML"])


def test_every_ray_job_entry_point_exists_and_documented():
    for stage in ("prepare", "semantics", "train", "evaluate", "pipeline", "report"):
        path = REPO / "ray_jobs" / f"{stage}.py"
        assert path.is_file(), path
        assert f'run("{stage}")' in path.read_text()
    readme = (CLUSTER / "README.md").read_text()
    for e in _entrypoints(readme):
        assert (REPO / e).is_file(), e
