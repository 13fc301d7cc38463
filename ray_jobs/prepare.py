"""Ray job: the prepare stage. `ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python ray_jobs/prepare.py [overrides]`"""

from _entry import run

if __name__ == "__main__":
    run("prepare")
