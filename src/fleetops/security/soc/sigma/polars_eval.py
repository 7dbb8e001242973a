"""Predicate nodes → Polars expressions over a frame with one String column per field.

Case-insensitive matches read a lower-cased copy of the column (named by
:func:`lower_name`, computed once per field and batch); OR-ed ``contains`` lists run as one
Aho-Corasick ``contains_any``. Every leaf yields a definite boolean (a missing field is
``False``), so ``not`` behaves as in Sigma.
"""

from __future__ import annotations

import re
from functools import cache

import polars as pl

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
    UnsupportedRuleError,
)

LOWER_PREFIX = "\x00lc:"


def lower_name(field: str) -> str:
    return LOWER_PREFIX + field


@cache
def _rust_regex_ok(pattern: str) -> bool:
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.PolarsError:
        return False
    return True


def check_regex(field: str, pattern: str) -> None:
    """Raise :class:`UnsupportedRuleError` if neither Rust nor Python regex can compile it."""
    if _rust_regex_ok(pattern):
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UnsupportedRuleError(
            f"field {field!r}: invalid regular expression {pattern!r}: {exc}"
        ) from None


def lower_fields(node: Node) -> set[str]:
    """Fields whose lower-cased copy the expression of ``node`` reads."""
    out: set[str] = set()

    def walk(n: Node) -> None:
        if isinstance(n, And | Or):
            for a in n.args:
                walk(a)
        elif isinstance(n, Not):
            walk(n.arg)
        elif (isinstance(n, StrMatch) and not n.cased and n.kind != "regex") or (
            isinstance(n, AnyContains) and not all(p.isascii() for p in n.patterns)
        ):
            out.add(n.field)

    walk(node)
    return out


def to_expr(node: Node) -> pl.Expr:
    """The Polars boolean expression of ``node`` (columns named by field)."""
    if isinstance(node, And):
        return pl.all_horizontal([to_expr(a) for a in node.args])
    if isinstance(node, Or):
        return pl.any_horizontal([to_expr(a) for a in node.args])
    if isinstance(node, Not):
        return ~to_expr(node.arg)
    if isinstance(node, Const):
        return pl.lit(node.value)
    return _leaf(node).fill_null(False)


def _leaf(node: Node) -> pl.Expr:
    if isinstance(node, StrMatch):
        if node.kind == "regex":
            col = pl.col(node.field)
            if _rust_regex_ok(node.pattern):
                return col.str.contains(node.pattern)
            rx = re.compile(node.pattern)
            return col.map_elements(
                lambda s: rx.search(s) is not None, return_dtype=pl.Boolean, skip_nulls=True
            )
        if node.cased:
            col, pattern = pl.col(node.field), node.pattern
        else:
            col, pattern = pl.col(lower_name(node.field)), node.pattern.lower()
        if node.kind == "eq":
            return col == pattern
        if node.kind == "contains":
            return col.str.contains(pattern, literal=True)
        if node.kind == "startswith":
            return col.str.starts_with(pattern)
        return col.str.ends_with(pattern)
    if isinstance(node, AnyContains):
        if all(p.isascii() for p in node.patterns):
            return pl.col(node.field).str.contains_any(
                list(node.patterns), ascii_case_insensitive=True
            )
        return pl.col(lower_name(node.field)).str.contains_any([p.lower() for p in node.patterns])
    if isinstance(node, NumCompare):
        num = pl.col(node.field).str.strip_chars().cast(pl.Float64, strict=False)
        match node.op:
            case "lt":
                return num < node.number
            case "lte":
                return num <= node.number
            case "gt":
                return num > node.number
            case "gte":
                return num >= node.number
            case _:
                return num != node.number
    if isinstance(node, IsNull):
        return pl.col(node.field).is_null()
    if isinstance(node, Exists):
        present = pl.col(node.field).is_not_null()
        return present if node.exists else ~present
    if isinstance(node, FieldRef):
        left, right = pl.col(node.field), pl.col(node.other)
        if node.kind == "eq":
            return left == right
        if node.kind == "startswith":
            return left.str.starts_with(right)
        return left.str.ends_with(right)
    raise UnsupportedRuleError(f"cannot evaluate {node!r}")  # pragma: no cover
