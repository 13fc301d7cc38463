"""Ray job: the train stage. `ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python ray_jobs/train.py [overrides]`"""

from _entry import run

if __name__ == "__main__":
    run("train")
