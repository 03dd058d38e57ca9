"""Packaging beyond pyproject.toml: ship the repository's ``data/`` inside the wheel.

A reader who installs slimlib from git without a clone (Colab: ``pip install
"slimlib @ git+<repository>"``) gets the model cards, statistics and parameter
sets as the package folder ``slimlib/_data``, where :func:`slimlib.data_dir`
finds them.  An editable install (``make``) maps the same name to ``data/``, and
``data_dir`` reads the repository's ``data/`` directly.
"""
from setuptools import find_namespace_packages, find_packages, setup

DATA = ["slimlib._data"] + [f"slimlib._data.{p}" for p in find_namespace_packages(where="data")]

setup(
    packages=find_packages(include=["slimlib", "slimlib.*"]) + DATA,
    package_dir={"slimlib._data": "data"},
    package_data={"slimlib": ["py.typed"],
                  **{p: ["*.json", "*.jsonl", "*.txt", "*.md", "*.safetensors"] for p in DATA}},
)
