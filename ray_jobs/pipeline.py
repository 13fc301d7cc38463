"""Ray job: the pipeline stage. `ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python ray_jobs/pipeline.py [overrides]`"""

from _entry import run

if __name__ == "__main__":
    run("pipeline")
