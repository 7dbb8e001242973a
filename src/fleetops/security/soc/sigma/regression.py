"""``rules test``: load rules and replay the regression events that come with them.

SigmaHQ rules may carry ``regression_tests_path``: an ``info.yml`` (relative to the rule
repository root) listing event files and the expected number of matches. The events are
read as JSON (the ``.json`` twin of each ``.evtx``, evtx_dump layout) with the Windows
parser and the rule is evaluated on them alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fleetops.core.ocsf import EventBatch
from fleetops.security.soc.parsers.windows import parse_windows_json
from fleetops.security.soc.sigma.engine import CompiledRule, RuleSet


def _repository_root(rule_path: Path, relative: str) -> Path | None:
    """The folder that ``relative`` (a repository path) resolves from, searched upwards."""
    for parent in rule_path.resolve().parents:
        if (parent / relative).is_file():
            return parent
    return None


def _event_files(info: dict[str, Any], root: Path) -> list[tuple[Path, int | None]]:
    tests = info.get("regression_tests_info") or []
    out: list[tuple[Path, int | None]] = []
    for test in tests:
        if not isinstance(test, dict) or not test.get("path"):
            continue
        events = root / str(test["path"])
        json_twin = events.with_suffix(".json")
        count = test.get("match_count")
        out.append(
            (json_twin if json_twin.is_file() else events, None if count is None else int(count))
        )
    return out


def regression_for(rules: RuleSet, rule: CompiledRule) -> list[dict[str, Any]]:
    """One row per regression test of ``rule``: expected and matched counts."""
    relative = rule.custom.get("regression_tests_path")
    if not relative:
        return []
    root = _repository_root(Path(rule.path), str(relative))
    if root is None:
        return [
            {
                "rule_id": rule.rule_id,
                "expected": None,
                "matched": None,
                "error": f"{relative} not found",
            }
        ]
    info = yaml.safe_load((root / str(relative)).read_text(encoding="utf-8")) or {}
    single = RuleSet([rule])
    rows: list[dict[str, Any]] = []
    for events_path, expected in _event_files(info, root):
        row: dict[str, Any] = {"rule_id": rule.rule_id, "expected": expected, "matched": None}
        if not events_path.is_file():
            row["error"] = f"{events_path} not found"
        elif events_path.suffix.lower() != ".json":
            row["error"] = f"{events_path.name}: only JSON events are read (no .json twin)"
        else:
            batch: EventBatch = parse_windows_json(
                events_path.read_text(encoding="utf-8"), str(events_path)
            )
            row["matched"] = sum(len(v) for v in single.match_rows(batch).values())
        rows.append(row)
    return rows


def run_regression(paths: Sequence[Path | str]) -> dict[str, Any]:
    """The ``rules test`` contract: loaded count, refusals, per-rule regression results."""
    rules = RuleSet.load(paths)
    regression: list[dict[str, Any]] = []
    for rule in rules.rules:
        regression.extend(regression_for(rules, rule))
    return {
        "loaded": len(rules.rules),
        "refused": [{"path": r.path, "reason": r.reason} for r in rules.refused],
        "regression": regression,
    }
