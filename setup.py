"""setuptools glue for what pyproject.toml cannot say: ship the Hydra tree `configs/` inside
the wheel as `semacdr_dist/conf/` (the tree stays at the top of the repo, mirroring the
package; `semacdr_dist.config.config_dir` finds either)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["semacdr_dist*"]), "semacdr_dist.conf"],
    package_dir={"semacdr_dist.conf": "configs"},
    package_data={"semacdr_dist.conf": ["*.yaml", "*/*.yaml"]},
)
