"""`isara check-metrics`: compare a run's metrics with a committed baseline under tolerances."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isara.errors import IsaraError


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    direction: Literal["lower", "higher"]  # which way is better
    abs: float = Field(0.0, ge=0)  # allowed worsening in the metric's own units
    rel: float = Field(0.0, ge=0)  # allowed worsening as a fraction of the baseline value


def lookup(metrics: dict, key: str) -> float | None:
    """A dotted path into nested metrics; a dict with a 'rate' or 'mean' resolves to it."""
    node = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        node = node.get("rate", node.get("mean"))
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def load_rules(path: Path) -> dict[str, Rule]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise IsaraError(f"{path}: cannot read thresholds ({type(err).__name__})") from None
    if not isinstance(raw, dict) or not raw:
        raise IsaraError(f"{path}: expected a mapping of metric -> rule")
    rules = {}
    for key, value in raw.items():
        try:
            rules[key] = Rule.model_validate(value)
        except ValidationError as err:
            first = err.errors()[0]
            raise IsaraError(f"{path}: {key}.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return rules


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise IsaraError(f"{path}: cannot read metrics ({type(err).__name__})") from None


def check(current: Path, baseline: Path, thresholds: Path) -> tuple[bool, list[dict]]:
    """Every rule's verdict; a metric missing from the current run, or not a number, fails."""
    cur, base, rules = _read_json(current), _read_json(baseline), load_rules(thresholds)
    rows = []
    for key, rule in rules.items():
        b, c = lookup(base, key), lookup(cur, key)
        if b is None:
            raise IsaraError(f"{baseline}: baseline has no metric '{key}'")
        allowed = max(rule.abs, rule.rel * abs(b))
        if c is None or math.isnan(c):
            status = "missing"
        else:
            worse = c - b if rule.direction == "lower" else b - c
            status = "ok" if worse <= allowed + 1e-12 else "regressed"
        rows.append(
            {"metric": key, "baseline": b, "current": c, "better": rule.direction, "allowed": allowed, "status": status}
        )
    return all(r["status"] == "ok" for r in rows), rows


def table(rows: list[dict]) -> str:
    lines = ["| metric | baseline | current | better | allowed worsening | status |", "|---|---|---|---|---|---|"]
    for r in rows:
        cur = "—" if r["current"] is None else f"{r['current']:.4g}"
        lines.append(
            f"| {r['metric']} | {r['baseline']:.4g} | {cur} | {r['better']} | {r['allowed']:.4g} | "
            f"{r['status'].upper() if r['status'] != 'ok' else 'ok'} |"
        )
    return "\n".join(lines)
