"""``make lab``: JupyterLab serves chapters/ with the .md chapters as notebooks (``make test``).

Starts ``make lab`` on 127.0.0.1 with a random free port and a random token,
asks the Jupyter contents API for the folder listing and for one chapter, and
stops the server (its process group, which this test started).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def lab():
    port, token = _free_port(), secrets.token_hex(16)
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                _get(f"{base}/api/status", token)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab did not start: {proc.stdout.read()[-3000:]}")
                if time.time() > deadline:
                    pytest.fail("JupyterLab did not answer within 120 s")
                time.sleep(1)
        yield base, token
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)   # the session this test started: make and jupyter
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_lab_lists_chapters_as_notebooks(lab):
    base, token = lab
    listing = {item["name"]: item for item in _get(f"{base}/api/contents/", token)["content"]}
    chapters = sorted(p.name for p in (ROOT / "chapters").glob("*.md")
                      if "kernelspec:" in p.read_text(encoding="utf-8").split("\n---", 1)[0])
    assert chapters
    for name in chapters:
        assert listing[name]["type"] == "notebook", (name, listing[name]["type"])
    # a chapter opens as a notebook with its code cells, and reading it writes nothing beside it
    before = sorted((ROOT / "chapters").iterdir())
    nb = _get(f"{base}/api/contents/{chapters[0]}?type=notebook&content=1", token)["content"]
    assert any(c["cell_type"] == "code" for c in nb["cells"])
    assert sorted((ROOT / "chapters").iterdir()) == before


def test_lab_has_myst_rendering(lab):
    base, token = lab
    # the federated labextensions the server offers to the browser include jupyterlab-myst and jupytext
    page = urllib.request.urlopen(urllib.request.Request(
        f"{base}/lab?token={token}"), timeout=30).read().decode()
    assert "jupyterlab-myst" in page and "jupyterlab-jupytext" in page


def test_lab_opens_markdown_as_notebook_by_default(lab):
    base, token = lab
    plugin = _get(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin", token)
    # overrides.json becomes the schema default (what a user who changed nothing gets)
    viewers = plugin["schema"]["properties"]["defaultViewers"]["default"]
    assert viewers.get("markdown") == "Jupytext Notebook" and viewers.get("myst") == "Jupytext Notebook"
