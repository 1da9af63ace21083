"""Pipeline overhead: what DVC costs when nothing has to run, against what it costs to re-hash.

A no-op `dvc repro` and `dvc status` on the committed default run trust the file stat cache DVC
keeps; the baseline is the same command after every output's mtime changed, when DVC must hash
every dataset and checkpoint again. Runs in a throwaway clone that shares this checkout's DVC
cache, so the workspace is never touched; skipped when the default run's outputs are not in the
cache (run `dvc repro` or `dvc pull` first).

Run alone: python -m pytest tests/bench/test_bench_pipeline.py --benchmark-only
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DVC = [sys.executable, "-m", "dvc"]


def _run(args: list[str], cwd: Path) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(cwd)})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _timed(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = _run(args, cwd)
    return time.perf_counter() - start, out


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = ROOT / ".dvc" / "cache"
    if not cache.is_dir():
        pytest.skip("no DVC cache here: run `dvc repro` (or `dvc pull`) first")
    dst = tmp_path_factory.mktemp("overhead") / "repo"
    _run(["git", "clone", "-q", str(ROOT), str(dst)], ROOT)
    _run([*DVC, "config", "--local", "cache.dir", str(cache)], dst)
    _run([*DVC, "config", "--local", "cache.type", "copy"], dst)  # links would share mtimes with ROOT
    checkout = subprocess.run([*DVC, "checkout", "dvc.yaml"], cwd=dst, capture_output=True, text=True)
    if checkout.returncode != 0:
        pytest.skip("the default run's outputs are not in the DVC cache: run `dvc repro` or `dvc pull` first")
    yield dst
    shutil.rmtree(dst, ignore_errors=True)


def _outputs(repo: Path) -> list[Path]:
    files = [p for d in ("data", "models") for p in (repo / d).rglob("*") if p.is_file() and "raw" not in p.parts]
    return [p for p in files if ".git" not in p.parts]


def test_noop_repro_and_status_against_rehashing(benchmark, clone: Path) -> None:
    _run([*DVC, "status", "dvc.yaml"], clone)  # fills DVC's stat cache for the checked-out files
    noop_repro, out = _timed([*DVC, "repro", "dvc.yaml"], clone)
    assert "Running stage" not in out
    status = benchmark.pedantic(lambda: _run([*DVC, "status", "dvc.yaml"], clone), rounds=3, warmup_rounds=0)
    assert "up to date" in status.lower()
    status_s = benchmark.stats.stats.median

    outputs = _outputs(clone)
    size_gb = sum(p.stat().st_size for p in outputs) / 1e9
    later = time.time() + 10
    for p in outputs:
        os.utime(p, (later, later))  # same bytes, new mtime: DVC can no longer trust its stat cache
    rehash_s, status = _timed([*DVC, "status", "dvc.yaml"], clone)
    assert "up to date" in status.lower()
    benchmark.extra_info.update(
        input=f"default run: {len(outputs)} output files, {size_gb:.2f} GB (checkpoints are safetensors files)",
        baseline=f"dvc status re-hashing every output {rehash_s:.1f}s",
        fast=f"dvc status {status_s:.1f}s; no-op dvc repro {noop_repro:.1f}s",
        speed_ratio=rehash_s / status_s,
        noop_repro_s=noop_repro,
        status_s=status_s,
        rehash_s=rehash_s,
    )
