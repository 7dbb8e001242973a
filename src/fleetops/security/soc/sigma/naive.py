"""The same compiled rules evaluated one event at a time in plain Python.

This is deliberately simple: the baseline the columnar engine is benchmarked against and
the reference it is checked against (both must flag exactly the same events).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from fleetops.security.soc.sigma.ir import (
    And,
    AnyContains,
    Const,
    Exists,
    FieldRef,
    IsNull,
    Node,
    Not,
    NumCompare,
    Or,
    StrMatch,
)

Row = Mapping[str, str | None]


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def matches(node: Node, row: Row) -> bool:
    """Whether one event (field name → string value or ``None``) satisfies ``node``."""
    if isinstance(node, And):
        return all(matches(a, row) for a in node.args)
    if isinstance(node, Or):
        return any(matches(a, row) for a in node.args)
    if isinstance(node, Not):
        return not matches(node.arg, row)
    if isinstance(node, Const):
        return node.value
    if isinstance(node, IsNull):
        return row.get(node.field) is None
    if isinstance(node, Exists):
        return (row.get(node.field) is not None) == node.exists
    value = row.get(node.field)
    if value is None:
        return False
    if isinstance(node, StrMatch):
        if node.kind == "regex":
            return _regex(node.pattern).search(value) is not None
        pattern = node.pattern
        if not node.cased:
            value, pattern = value.lower(), pattern.lower()
        if node.kind == "eq":
            return value == pattern
        if node.kind == "contains":
            return pattern in value
        if node.kind == "startswith":
            return value.startswith(pattern)
        return value.endswith(pattern)
    if isinstance(node, AnyContains):
        low = value.lower()
        return any(p.lower() in low for p in node.patterns)
    if isinstance(node, NumCompare):
        num = _number(value)
        if num is None:
            return False
        return {
            "lt": num < node.number,
            "lte": num <= node.number,
            "gt": num > node.number,
            "gte": num >= node.number,
            "neq": num != node.number,
        }[node.op]
    if isinstance(node, FieldRef):
        other = row.get(node.other)
        if other is None:
            return False
        if node.kind == "eq":
            return value == other
        if node.kind == "startswith":
            return value.startswith(other)
        return value.endswith(other)
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover
