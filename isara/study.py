"""The study: does ISARA's last iteration beat each baseline, over several seeds and every held-out prompt?

`isara study run` runs the root pipeline once per seed as a DVC experiment
(`dvc exp run -S seed=N -S evaluate.max_per_suite=<every prompt> <targets>`, named study-seedN),
with targets that evaluate only what the study compares: the sampled arms (ISARA's last iteration
and one-shot) under every seed, the deterministic arms (pretrained, SFT, the schedule-matched SFT,
ICL-kNN) once, under the first seed. The seed set, the eval prompts and the judges do not follow
`seed` (isara.prepare_data.SPLIT_SEED), so every run is judged by one judge on one prompt set: each
run's judge hash is recorded and the report refuses runs judged by different judges.

Each run's generations are copied into the study folder with its wall time, so the folder holds
every judgement the page reads; `isara study report` (isara.study_report) builds index.md,
summary.json and forest.png from those files alone, and `isara study table` (isara.ablation) sets
several study folders side by side. No stage filters generated data with the evaluation's judges, so a new judge
does not change an answer: `isara study rejudge` scores a folder's answers (and the teacher's pairs)
again with the workspace's judges, the same study at the cost of scoring alone.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import yaml

from isara import paths, schema
from isara import teacher as teacher_data
from isara.config import Params, parse_params
from isara.errors import IsaraError
from isara.report import read_json

log = logging.getLogger(__name__)

# More prompts than any suite holds: every held-out prompt is answered, whatever the seed, so the
# arms of different seeds pair on the same prompts.
EVERY_PROMPT = 100_000
# The arms whose training data does not depend on `seed` beyond the order of its batches: run once.
DETERMINISTIC = {
    "sft": "baseline@sft",
    "sft_matched": "baseline@sft_matched",
    "icl_knn": "icl_baseline@icl_knn",
    "pretrained": "baseline@pretrained",
}
RUNS = "runs.json"
TEACHER = ".teacher.json"  # beside a sampled arm's generations: metrics/teacher/<arm>.json of its run
JUDGED = ".judged.parquet"  # beside it: data/judged/<arm>.parquet, the pairs those metrics scored
SEED_PAIRS = "d0.parquet"  # the seed pairs (D0) of every run of the study


def sampled_arms(iterations: dict) -> list[str]:
    """ISARA's last iteration, then one-shot when the params have it."""
    its = [n for n in iterations if re.fullmatch(r"it\d+", n)]
    if not its:
        raise IsaraError("params.yaml: iterations has no itK run, so there is no ISARA arm to study")
    last = max(its, key=lambda n: int(n[2:]))
    return [last] + (["oneshot"] if "oneshot" in iterations else [])


def _sh(cmd: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if check and done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise IsaraError(f"`{' '.join(cmd)}` failed: {tail[0]}")
    return done


def judge_hash(root: Path) -> str:
    """The judge's identity: dvc.lock's hash of models/judges, its weights. Not of metrics/judge.json,
    which gains a field (an interval, say) while the judge, and every score it gives, stays the same."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    return {o["path"]: o["md5"] for o in lock["stages"]["judge"]["outs"]}[str(paths.JUDGES)]


def _legacy_judges(root: Path, ids: set[str]) -> dict[str, str]:
    """Judge ids recorded before they named the weights (the hash of metrics/judge.json then) mapped
    to the hash of models/judges in the same version of dvc.lock, from its git history."""
    done = _sh(["git", "log", "--format=%H", "--", "dvc.lock"], root, check=False)
    found: dict[str, str] = {}
    for rev in done.stdout.split() if not done.returncode else []:
        lock = yaml.safe_load(_sh(["git", "show", f"{rev}:dvc.lock"], root).stdout) or {}
        outs = {o["path"]: o.get("md5") for o in lock.get("stages", {}).get("judge", {}).get("outs", [])}
        if outs.get("metrics/judge.json") in ids and str(paths.JUDGES) in outs:
            found[outs["metrics/judge.json"]] = outs[str(paths.JUDGES)]
        if found.keys() == ids:
            break
    return found


def read_record(out: Path) -> dict:
    return read_json(out / RUNS) or {"seeds": {}}


def settings(root: Path, overrides: dict[str, str]) -> Params:
    """The params every run of the study starts from: params.yaml with the overrides, checked."""
    from isara.domain import apply_overrides

    owned = sorted({"seed", "evaluate.max_per_suite"} & set(overrides))
    if owned:
        raise IsaraError(f"--set {owned[0]}: the study sets it in each run (--seeds, --max-per-suite)")
    base = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    values = {k: yaml.safe_load(v) for k, v in overrides.items()}
    return parse_params(apply_overrides(base, values), "params.yaml with --set " + " ".join(overrides))


def run(
    seeds: list[int],
    out: Path,
    max_per_suite: int = EVERY_PROMPT,
    root: Path = Path("."),
    overrides: dict[str, str] | None = None,
    only: list[str] | None = None,
) -> dict:
    """One DVC experiment per seed; each run's generations and wall time recorded under `out`.

    max_per_suite below a suite's size answers the same seeded choice of its prompts in every run
    (drawn with SPLIT_SEED), so the arms still pair; the default answers every prompt. overrides
    ({"contexts": "8"}) are set in every run of the study: an ablation setting. only: these arms
    alone (["icl_knn"]: the teacher's quality at a setting, without training ISARA).
    """
    overrides = dict(overrides or {})
    if len(set(seeds)) != len(seeds) or not seeds:
        raise IsaraError(f"--seeds {' '.join(map(str, seeds))}: give distinct seeds")
    if shutil.which("dvc") is None:
        raise IsaraError("dvc is not on PATH: install the project (make setup) first")
    # The runs rewrite tracked pipeline outputs (dvc.lock, params, metrics); they are put back from git
    # at the end, so a tracked file with changes of its own would be lost: refuse to start instead.
    inside = out.resolve().is_relative_to(root.resolve())
    keep = [f":(exclude){out.resolve().relative_to(root.resolve())}"] if inside else []  # the study's own files
    status = _sh(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *keep], root).stdout
    dirty = [line[3:] for line in status.splitlines() if line.strip()]
    if dirty:
        raise IsaraError(f"uncommitted changes to {', '.join(dirty[:3])}{' ...' if len(dirty) > 3 else ''}: "
                         "commit or stash them; the study puts the workspace back to the last commit")  # fmt: skip
    params = settings(root, overrides)
    sampled = sampled_arms(params.iterations)
    chosen = list(only or sampled + list(DETERMINISTIC))
    unknown = [a for a in chosen if a not in sampled and a not in DETERMINISTIC]
    if unknown:
        raise IsaraError(f"--only {unknown[0]}: not an arm of the study ({', '.join(sampled + list(DETERMINISTIC))})")
    # The teacher's metrics (the judges on the self-labelled pairs) come with each sampled arm where
    # the pipeline has the stage; they cost embeddings only.
    teacher = "teacher" in yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")).get("stages", {})
    record = read_record(out)
    if (record.get("max_per_suite"), record.get("sampled"), record.get("overrides", {}), record.get("only")) != (
        max_per_suite,
        sampled,
        overrides,
        only,
    ):
        record = {"seeds": {}}  # another study's runs: not mixed with these
    # Seeds already recorded and not rerun are kept, so an interrupted study goes on with the rest;
    # the deterministic arms run under the first seed unless a kept run holds them.
    kept = {s: r for s, r in record["seeds"].items() if int(s) not in seeds}
    deterministic_done = any(set(r["arms"]) & set(DETERMINISTIC) for r in kept.values())
    record.update(
        {
            "max_per_suite": max_per_suite,
            "overrides": overrides,
            "only": only,
            "sampled": sampled,
            "deterministic": sorted(DETERMINISTIC),
            "threshold": params.judge.threshold,
        }
    )
    try:
        for i, seed in enumerate(seeds):
            first = i == 0 and not deterministic_done
            arms = [a for a in sampled if a in chosen] + [a for a in DETERMINISTIC if a in chosen and first]
            if not arms:
                continue  # only deterministic arms chosen: they ran under the first seed
            targets = [DETERMINISTIC[a] if a in DETERMINISTIC else f"evaluate@{a}" for a in arms]
            targets += [f"teacher@{a}" for a in arms if a not in DETERMINISTIC and teacher]  # the labels' quality
            name = f"{out.resolve().name}-seed{seed}"  # one study's experiments do not replace another's
            _sh(["dvc", "exp", "remove", name], root, check=False)  # a rerun replaces its own experiment
            cmd = [
                "dvc",
                "exp",
                "run",
                "-n",
                name,
                "-S",
                f"seed={seed}",
                "-S",
                f"evaluate.max_per_suite={max_per_suite}",
                *(a for k, v in overrides.items() for a in ("-S", f"{k}={v}")),
            ]
            log.info("seed %d: %s", seed, " ".join(cmd + targets))
            start = time.monotonic()
            done = subprocess.run(cmd + targets, cwd=root)
            if done.returncode:
                raise IsaraError(f"seed {seed}: `dvc exp run` failed (exit {done.returncode}); its log is above")
            wall = time.monotonic() - start
            for arm in arms:
                with paths.atomic(out / f"seed{seed}" / f"{arm}.parquet") as tmp:
                    shutil.copy(root / "data/eval" / f"{arm}.parquet", tmp)
                if teacher and arm not in DETERMINISTIC:
                    with paths.atomic(out / f"seed{seed}" / f"{arm}{TEACHER}") as tmp:
                        shutil.copy(root / "metrics/teacher" / f"{arm}.json", tmp)
                    with paths.atomic(out / f"seed{seed}" / f"{arm}{JUDGED}") as tmp:  # so a rejudge rescores them
                        shutil.copy(root / teacher_data.DATA / f"{arm}.parquet", tmp)
            if i == 0:
                with paths.atomic(out / "judge.json") as tmp:
                    shutil.copy(root / "metrics/judge.json", tmp)
                if teacher:  # D0, whose judged rates the teacher metrics set beside the accepted pairs'
                    pool = schema.read(root / paths.data("it0") / "pool.parquet", schema.POOL)
                    schema.write(pool.filter(pl.col("origin") == teacher_data.SEED), out / SEED_PAIRS, schema.POOL)
            record["seeds"][str(seed)] = {
                "experiment": name,
                "arms": arms,
                "wall_s": round(wall),
                "judge_md5": judge_hash(root),
            }
            paths.write_json(out / RUNS, record)  # after each seed: an interrupted study keeps its runs
            log.info("seed %d done in %.1f min: %s", seed, wall / 60, ", ".join(arms))
    finally:
        # The workspace back to the committed run: tracked files from git, outputs from the cache.
        _sh(["git", "checkout", "--", ".", *keep], root, check=False)
        if _sh(["dvc", "checkout", "--quiet"], root, check=False).returncode:
            log.warning("some outputs of dvc.lock are not in the cache: `dvc repro` rebuilds them")
    return record


def current_judge(root: Path = Path(".")) -> str:
    """The judge stage's output hash in dvc.lock, once `dvc status` finds models/judges to be that output."""
    if not (root / paths.JUDGES).is_dir():
        raise IsaraError(f"{paths.JUDGES}: missing; `dvc repro judge` trains the judges")
    done = _sh(["dvc", "status", "--json", "judge"], root)
    if json.loads(done.stdout or "{}"):
        raise IsaraError(f"{paths.JUDGES} or its inputs differ from dvc.lock; `dvc repro judge` first")
    return judge_hash(root)


def rejudge(
    out: Path, load_judges, judge_md5: str, judge_metrics: Path, root: Path = Path("."), threshold: float | None = None
) -> dict:
    """Every recorded answer of the study scored again by the judges `load_judges()` returns (the judge
    stage's output `judge_md5`), a fresh object for each file as each stage has one: the refusal judge
    embeds the texts it has not seen in batches, and a batch's padding moves a score by ~1e-6.

    The answers do not depend on the judge (no stage filters generated data with it), so a study
    rejudged is the study rerun under the new judge, at the cost of scoring alone: each seed's
    generations keep their prompts and answers and get the new harm and refusal scores; judge.json is
    the new judge's held-out accuracy. The teacher metrics' judged rates are scored again from the
    pairs they scored (<arm>.judged.parquet) and D0 (d0.parquet), where the folder holds them (studies
    run before `isara study run` saved them do not): otherwise they stay as judged, the seed's
    `teacher_judge_md5` names the judge that scored them, and the pages mark them. Files are replaced
    one at a time, atomically; runs.json last. A study every score of which this judge gave already
    is not scored again: only judge.json is replaced (the judge's metrics file may have gained a field).
    Ids recorded before they named the judge's weights are translated first (`_legacy_judges`).
    threshold: the decision threshold the pages and teacher rates use from now on (`judge.threshold`);
    None keeps the study's; a new one has every file scored again, as a new judge does.
    """
    record = read_record(out)
    if not record["seeds"]:
        raise IsaraError(f"{out}/{RUNS}: no recorded run; `isara study run` writes it")
    if not judge_metrics.is_file():
        raise IsaraError(f"{judge_metrics}: missing; `dvc repro judge` writes it with the judges")
    keys = ("judge_md5", "teacher_judge_md5")
    legacy = {r[k] for r in record["seeds"].values() for k in keys if k in r and not r[k].endswith(".dir")}
    if legacy and judge_md5.endswith(".dir") and (weights := _legacy_judges(root, legacy)):
        for r in record["seeds"].values():
            r.update({k: weights.get(r[k], r[k]) for k in keys if k in r})
        paths.write_json(out / RUNS, record)
        log.info("%s: judge ids %s translated to the weights' hashes", out, ", ".join(sorted(weights)))
    threshold = record["threshold"] if threshold is None else threshold
    scored = all(r["judge_md5"] == judge_md5 and "teacher_judge_md5" not in r for r in record["seeds"].values())
    if scored and record["threshold"] == threshold:
        log.info("%s: every answer was scored by this judge already; judge.json replaced", out)
        with paths.atomic(out / "judge.json") as tmp:
            shutil.copy(judge_metrics, tmp)
        return record
    d0 = schema.read(out / SEED_PAIRS, schema.POOL) if (out / SEED_PAIRS).is_file() else None
    for s in sorted(record["seeds"], key=int):
        run, folder = record["seeds"][s], out / f"seed{s}"
        stale = False
        for arm in run["arms"]:
            log.info("seed %s, %s: scoring its answers", s, arm)
            _rescore(folder / f"{arm}.parquet", schema.GENERATIONS, "prompt", "answer", load_judges())
            metrics = read_json(folder / f"{arm}{TEACHER}")
            if not metrics:
                continue
            if d0 is None or not (folder / f"{arm}{JUDGED}").is_file():
                stale = True  # pairs the folder does not hold: the metrics stay as their judge scored them
                continue
            judges = load_judges()  # the teacher stage's order: its pairs, then D0
            pairs = _rescore(folder / f"{arm}{JUDGED}", teacher_data.JUDGED, "question", "answer", judges)
            metrics["threshold"] = threshold
            metrics.update(teacher_data.judged_rates(pairs, d0, judges, threshold))
            paths.write_json(folder / f"{arm}{TEACHER}", metrics)
        if stale:
            run.setdefault("teacher_judge_md5", run["judge_md5"])
        else:
            run.pop("teacher_judge_md5", None)  # every teacher file rescored: they follow the answers' judge
        run["judge_md5"] = judge_md5
    record.setdefault("rejudged", []).append(judge_md5)
    record["threshold"] = threshold
    with paths.atomic(out / "judge.json") as tmp:
        shutil.copy(judge_metrics, tmp)
    paths.write_json(out / RUNS, record)
    return record


def _rescore(path: Path, columns: dict, question: str, answer: str, judges) -> pl.DataFrame:
    """The file's harm and refusal scores replaced by the judges' on its (question, answer) rows."""
    rows = schema.read(path, columns)
    q, a = rows[question].to_list(), rows[answer].to_list()
    rows = rows.with_columns(
        pl.Series("harm_score", judges.harm(q, a).astype(float), dtype=pl.Float64),
        pl.Series("refusal_score", judges.refusal(q, a).astype(float), dtype=pl.Float64),
    )
    schema.write(rows, path, columns)
    return rows


def stale_teacher(record: dict, seeds: list[str]) -> list[str]:
    """The seeds whose teacher metrics were scored by a judge other than the one of their answers."""
    return [s for s in seeds if record["seeds"][s].get("teacher_judge_md5", record["seeds"][s]["judge_md5"])
            != record["seeds"][s]["judge_md5"]]  # fmt: skip


def read_runs(out: Path) -> tuple[dict, dict[str, list[pl.DataFrame]], list[str]]:
    """The record, each arm's generations (one per seed it ran under) and the seeds, in seed order."""
    record = read_record(out)
    if not record["seeds"]:
        raise IsaraError(f"{out}/{RUNS}: no recorded run; `isara study run` writes it")
    seeds = sorted(record["seeds"], key=int)
    judges = {record["seeds"][s]["judge_md5"] for s in seeds}
    if len(judges) > 1:
        raise IsaraError(f"{out}: the seeds' runs were judged by {len(judges)} different judges; rerun the study")
    arms: dict[str, list[pl.DataFrame]] = {}
    for s in seeds:
        for arm in record["seeds"][s]["arms"]:
            arms.setdefault(arm, []).append(schema.read(out / f"seed{s}" / f"{arm}.parquet", schema.GENERATIONS))
    return record, arms, seeds


def teacher_metrics(out: Path, record: dict, seeds: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """{sampled arm: [(seed, its run's teacher metrics)]} for the runs that recorded them."""
    found: dict[str, list[tuple[str, dict]]] = {}
    for s in seeds:
        for arm in record["seeds"][s]["arms"]:
            metrics = read_json(out / f"seed{s}" / f"{arm}{TEACHER}")
            if metrics:
                found.setdefault(arm, []).append((s, metrics))
    return found
