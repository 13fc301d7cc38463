"""Ray job: `semacdr-dist evaluate` from the installed package (the cluster image has it; under
`ray job submit --working-dir .` Ray also puts the uploaded checkout on the job's PYTHONPATH).

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python ray_jobs/evaluate.py [overrides]
"""

from semacdr_dist.cli import run

if __name__ == "__main__":
    run("evaluate")
