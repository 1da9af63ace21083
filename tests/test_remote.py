"""A shared DVC remote: one machine runs the pipeline and pushes, a second clone pulls and reruns nothing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from botocore.client import BaseClient

# Stands in for one iteration: a dataset and a checkpoint folder. `runs.log` sits outside the outputs
# and out of git, so a clone that regenerates instead of pulling leaves one behind.
STAGE_SCRIPT = """\
from pathlib import Path

Path("data/it1").mkdir(parents=True, exist_ok=True)
Path("data/it1/train.jsonl").write_text('{"prompt": "p", "response": "r"}\\n' * 3)
Path("models/it1").mkdir(parents=True, exist_ok=True)
Path("models/it1/weights.bin").write_bytes(bytes(range(256)) * 16)
Path("models/it1/config.json").write_text('{"step": 1}')
with open("runs.log", "a") as log:
    log.write("ran\\n")
"""
OUTPUTS = ("data/it1/train.jsonl", "models/it1/weights.bin", "models/it1/config.json")
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "ci",
    "GIT_AUTHOR_EMAIL": "ci@isara",
    "GIT_COMMITTER_NAME": "ci",
    "GIT_COMMITTER_EMAIL": "ci@isara",
    "NO_PROXY": "127.0.0.1",  # the S3 emulator is on loopback
}
# Never the developer's own AWS profile: the remote's credentials come from `.dvc/config.local` only.
for _key in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    ENV.pop(_key, None)
S3_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}  # moto accepts any
REGION = "us-east-1"


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(list(map(str, args)), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def dvc(*args: str | Path, cwd: Path) -> str:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def status(cwd: Path) -> dict[str, list]:
    return json.loads(dvc("status", "--json", cwd=cwd))


def origin(root: Path, url: str, settings: dict[str, str], credentials: dict[str, str]) -> Path:
    """The first machine: a git + DVC repository with one stage, reproduced, committed and pushed."""
    repo = root / "origin"
    repo.mkdir()
    run("git", "init", "-q", cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("config", "core.analytics", "false", cwd=repo)
    dvc("config", "core.check_update", "false", cwd=repo)
    dvc("remote", "add", "-d", "shared", url, cwd=repo)
    for key, value in settings.items():  # committed in .dvc/config, so every clone finds the remote
        dvc("remote", "modify", "shared", key, value, cwd=repo)
    add_credentials(repo, credentials)
    (repo / "make_iteration.py").write_text(STAGE_SCRIPT)
    (repo / ".gitignore").write_text("runs.log\n")
    cmd = f"{shlex.quote(sys.executable)} make_iteration.py"
    stage = ["-n", "iteration", "-d", "make_iteration.py", "-o", "data/it1", "-o", "models/it1"]
    dvc("stage", "add", *stage, cmd, cwd=repo)
    assert "Running stage 'iteration'" in dvc("repro", cwd=repo)
    assert (repo / "runs.log").read_text() == "ran\n"
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "iteration 1", cwd=repo)
    assert ".dvc/config.local" not in run("git", "ls-files", cwd=repo).splitlines()
    dvc("push", cwd=repo)
    return repo


def add_credentials(repo: Path, credentials: dict[str, str]) -> None:
    """Into `.dvc/config.local`, which `dvc init` git-ignores: each machine sets its own."""
    for key, value in credentials.items():
        dvc("remote", "modify", "--local", "shared", key, value, cwd=repo)


def assert_pull_skips_rerun(root: Path, repo: Path, credentials: dict[str, str]) -> None:
    """A second machine clones, pulls, and finds every output in place and the pipeline up to date."""
    clone = root / "clone"
    run("git", "clone", "-q", repo, clone, cwd=root)
    add_credentials(clone, credentials)
    assert not any((clone / path).exists() for path in OUTPUTS)
    assert status(clone), "outputs are missing before the pull, so status must report them"
    dvc("pull", cwd=clone)
    for path in OUTPUTS:
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    assert status(clone) == {}
    assert "Running stage" not in dvc("repro", cwd=clone)
    assert not (clone / "runs.log").exists(), "the clone reran the stage instead of using the pulled outputs"


def test_local_directory_remote_shares_outputs(tmp_path: Path) -> None:
    store = tmp_path / "store"  # a NAS mount looks the same to DVC
    repo = origin(tmp_path, str(store), {}, {})
    assert any(path.is_file() for path in store.rglob("*")), "push left the remote empty"
    assert_pull_skips_rerun(tmp_path, repo, {})


def s3_client(endpoint: str) -> BaseClient:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, **{f"aws_{k}": v for k, v in S3_CREDENTIALS.items()}
    )


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's S3 emulator on a free loopback port, with an empty bucket `isara`."""
    reason = "the S3 remote test needs moto[server] and dvc-s3: pip install -e '.[dev]'"
    for module in ("moto.server", "dvc_s3", "boto3"):
        pytest.importorskip(module, reason=reason)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_client(endpoint).create_bucket(Bucket="isara")
    yield endpoint
    server.stop()


def test_s3_remote_shares_outputs(tmp_path: Path, s3_endpoint: str) -> None:
    settings = {"endpointurl": s3_endpoint, "region": REGION}  # MinIO, Ceph etc. take the same endpointurl
    repo = origin(tmp_path, "s3://isara/cache", settings, S3_CREDENTIALS)
    listing = s3_client(s3_endpoint).list_objects_v2(Bucket="isara", Prefix="cache/")
    assert listing["KeyCount"] > 0, "push left the bucket empty"
    assert_pull_skips_rerun(tmp_path, repo, S3_CREDENTIALS)
