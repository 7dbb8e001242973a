"""A Sigma detection compiled into a small tree of predicates over named fields.

pySigma parses the rule and resolves its condition (``1 of sel*``, ``all of them``,
``not``, parentheses) and value modifiers (``contains``, ``base64offset``, ``windash`` ...)
into a condition tree whose leaves are *field = value* and *keyword* expressions. This
module turns that tree into plain predicate nodes that both evaluators share: the
columnar Polars one (:mod:`.polars_eval`) and the per-event Python one (:mod:`.naive`).
Anything the engine cannot evaluate raises :class:`UnsupportedRuleError` with the field and
the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

KEYWORD_FIELD: Final = "\x00keywords"
"""Pseudo field for keyword searches (values without a field): the event's raw text."""

StrKind = Literal["eq", "contains", "startswith", "endswith", "regex"]


class UnsupportedRuleError(ValueError):
    """The rule uses something this engine cannot evaluate; the message says what."""


@dataclass(frozen=True)
class StrMatch:
    """``field`` matches ``pattern`` (``regex``: a regular expression, searched)."""

    field: str
    kind: StrKind
    pattern: str
    cased: bool = False
    literals: tuple[str, ...] = ()
    """For a wildcard pattern run as ``regex``: the literal pieces it must contain."""


@dataclass(frozen=True)
class AnyContains:
    """``field`` contains at least one of ``patterns`` (case-insensitive)."""

    field: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class NumCompare:
    field: str
    op: Literal["lt", "lte", "gt", "gte", "neq"]
    number: float


@dataclass(frozen=True)
class IsNull:
    field: str


@dataclass(frozen=True)
class Exists:
    field: str
    exists: bool


@dataclass(frozen=True)
class FieldRef:
    field: str
    other: str
    kind: Literal["eq", "startswith", "endswith"]


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class And:
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    arg: Node


Node = StrMatch | AnyContains | NumCompare | IsNull | Exists | FieldRef | Const | And | Or | Not


def fields_of(node: Node) -> list[str]:
    """Every field name a node reads (keywords as :data:`KEYWORD_FIELD`), in order, once."""
    out: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, And | Or):
            for a in n.args:
                walk(a)
        elif isinstance(n, Not):
            walk(n.arg)
        elif isinstance(n, Const):
            return
        else:
            out[n.field] = None
            if isinstance(n, FieldRef):
                out[n.other] = None

    walk(node)
    return list(out)


def _string_match(field: str, value: SigmaString, keyword: bool) -> Node:
    cased = isinstance(value, SigmaCasedString)
    if value.contains_placeholder():
        raise UnsupportedRuleError(f"field {field!r}: unresolved placeholder in value {value}")
    parts = list(value.s)
    if keyword:  # keyword searches match anywhere in the text
        parts = [SpecialChars.WILDCARD_MULTI, *parts, SpecialChars.WILDCARD_MULTI]
    # collapse repeated '*'
    merged: list[str | SpecialChars] = []
    for part in parts:
        if isinstance(part, str):
            if merged and isinstance(merged[-1], str):
                merged[-1] = merged[-1] + part
            elif part:
                merged.append(part)
        elif isinstance(part, SpecialChars):
            if not (part is SpecialChars.WILDCARD_MULTI and merged and merged[-1] is part):
                merged.append(part)
        else:
            raise UnsupportedRuleError(f"field {field!r}: unsupported value part {part!r}")
    multi = SpecialChars.WILDCARD_MULTI
    literal = [p for p in merged if isinstance(p, str)]
    specials = [p for p in merged if not isinstance(p, str)]
    if not specials:
        return StrMatch(field, "eq", "".join(literal), cased)
    if len(literal) == 0 and all(p is multi for p in specials):
        return Exists(field, True) if not keyword else Const(True)
    if len(literal) == 1 and all(p is multi for p in specials):
        text = literal[0]
        starts = merged[0] is multi
        ends = merged[-1] is multi
        if starts and ends and len(merged) == 3:
            return StrMatch(field, "contains", text, cased)
        if starts and len(merged) == 2:
            return StrMatch(field, "endswith", text, cased)
        if ends and len(merged) == 2:
            return StrMatch(field, "startswith", text, cased)
    regex = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is multi else ".") for p in merged
    )
    return StrMatch(
        field, "regex", f"(?s{'' if cased else 'i'})^{regex}$", True, tuple(p for p in literal if p)
    )


_COMPARE: Final = {
    CompareOperators.LT: "lt",
    CompareOperators.LTE: "lte",
    CompareOperators.GT: "gt",
    CompareOperators.GTE: "gte",
    CompareOperators.NEQ: "neq",
}


def _value(field: str | None, value: SigmaType) -> Node:
    keyword = field is None
    name = KEYWORD_FIELD if field is None else field
    if isinstance(value, SigmaExpansion):
        return Or(tuple(_value(field, v) for v in value.values))
    if isinstance(value, SigmaString):
        return _string_match(name, value, keyword)
    if isinstance(value, SigmaRegularExpression):
        flags = "".join(
            {
                SigmaRegularExpressionFlag.IGNORECASE: "i",
                SigmaRegularExpressionFlag.MULTILINE: "m",
                SigmaRegularExpressionFlag.DOTALL: "s",
            }[f]
            for f in sorted(value.flags, key=lambda f: f.name)
        )
        if value.regexp.contains_placeholder():
            raise UnsupportedRuleError(f"field {name!r}: unresolved placeholder in regex")
        pattern = value.regexp.to_plain_regex()
        return StrMatch(name, "regex", f"(?{flags}){pattern}" if flags else pattern, True)
    if keyword:
        if isinstance(value, SigmaNumber | SigmaBool):
            return _string_match(name, SigmaString(str(value).lower()), True)
        raise UnsupportedRuleError(f"keyword search with {type(value).__name__} value")
    assert field is not None
    if isinstance(value, SigmaNumber):
        number = value.number
        return StrMatch(field, "eq", str(number))
    if isinstance(value, SigmaBool):
        return StrMatch(field, "eq", "true" if value.boolean else "false")
    if isinstance(value, SigmaNull):
        return IsNull(field)
    if isinstance(value, SigmaExists):
        return Exists(field, bool(value.exists))
    if isinstance(value, SigmaCompareExpression):
        return NumCompare(field, _COMPARE[value.op], float(value.number.number))  # type: ignore[arg-type]
    if isinstance(value, SigmaFieldReference):
        kind: Literal["eq", "startswith", "endswith"] = (
            "startswith" if value.starts_with else "endswith" if value.ends_with else "eq"
        )
        return FieldRef(field, value.field, kind)
    if isinstance(value, SigmaCIDRExpression):
        alternatives = [
            ".*".join(re.escape(piece) for piece in pattern.split("*")).replace(r"\?", ".")
            + ("" if pattern.endswith("*") else "$")
            for pattern in value.expand()
        ]
        return StrMatch(field, "regex", "(?i)^(?:" + "|".join(alternatives) + ")", True)
    raise UnsupportedRuleError(f"field {field!r}: unsupported value type {type(value).__name__}")


def from_condition(tree: object) -> Node:
    """pySigma's post-processed condition tree → predicate nodes."""
    if isinstance(tree, ConditionAND):
        return And(tuple(from_condition(a) for a in tree.args))
    if isinstance(tree, ConditionOR):
        return Or(tuple(from_condition(a) for a in tree.args))
    if isinstance(tree, ConditionNOT):
        return Not(from_condition(tree.args[0]))
    if isinstance(tree, ConditionFieldEqualsValueExpression):
        return _value(tree.field, tree.value)
    if isinstance(tree, ConditionValueExpression):
        return _value(None, tree.value)
    if tree is None:
        return Const(False)
    if isinstance(tree, ConditionItem):
        raise UnsupportedRuleError(f"unsupported condition element {type(tree).__name__}")
    raise UnsupportedRuleError(f"unsupported condition element {tree!r}")


def simplify(node: Node) -> Node:
    """Flatten nested and/or, and merge OR-ed case-insensitive ``contains`` on one field."""
    if isinstance(node, Not):
        inner = simplify(node.arg)
        if isinstance(inner, Not):
            return inner.arg
        if isinstance(inner, Const):
            return Const(not inner.value)
        return Not(inner)
    if isinstance(node, And | Or):
        kind = type(node)
        args: list[Node] = []
        for a in (simplify(x) for x in node.args):
            if isinstance(a, kind):
                args.extend(a.args)
            else:
                args.append(a)
        if kind is Or:
            if any(isinstance(a, Const) and a.value for a in args):
                return Const(True)
            args = [a for a in args if not isinstance(a, Const)]
            groups: dict[str, list[str]] = {}
            rest: list[Node] = []
            for a in args:
                if isinstance(a, StrMatch) and a.kind == "contains" and not a.cased:
                    groups.setdefault(a.field, []).append(a.pattern)
                elif isinstance(a, AnyContains):
                    groups.setdefault(a.field, []).extend(a.patterns)
                else:
                    rest.append(a)
            merged: list[Node] = [
                StrMatch(f, "contains", p[0])
                if len(p) == 1
                else AnyContains(f, tuple(dict.fromkeys(p)))
                for f, p in groups.items()
            ]
            args = merged + rest
            if not args:
                return Const(False)
        else:
            if any(isinstance(a, Const) and not a.value for a in args):
                return Const(False)
            args = [a for a in args if not isinstance(a, Const)]
            if not args:
                return Const(True)
        if len(args) == 1:
            return args[0]
        return kind(tuple(args))
    return node


Requirement = dict[str, frozenset[str]]
"""field → lower-case literals: a match implies the field contains one of them."""


def requirement(node: Node) -> Requirement | None:
    """A necessary condition of ``node`` as literals, or ``None`` if there is none.

    If ``node`` matches an event, then for some field ``f`` of the result the event's
    ``f`` contains (ASCII case-insensitively) one of the result's literals for ``f``. The
    engine uses it to skip events and rules that cannot match. Of the operands of an
    ``and`` the most selective-looking is kept: longer literals first, and whole-value
    equality (usually a categorical field such as a method or an event id) last.
    """
    found = _requirement(node)
    return None if found is None else found[0]


def _requirement(node: Node) -> tuple[Requirement, int] | None:
    if isinstance(node, StrMatch):
        if node.kind == "regex":
            if not node.literals:
                return None
            pattern = max(node.literals, key=len)
        else:
            pattern = node.pattern
        if not pattern or not pattern.isascii():
            return None
        score = 0 if node.kind == "eq" else len(pattern)
        return {node.field: frozenset({pattern.lower()})}, score
    if isinstance(node, AnyContains):
        if not all(p and p.isascii() for p in node.patterns):
            return None
        return {node.field: frozenset(p.lower() for p in node.patterns)}, min(
            len(p) for p in node.patterns
        )
    if isinstance(node, And):
        options = [r for r in (_requirement(a) for a in node.args) if r is not None]
        return max(options, key=lambda o: o[1]) if options else None
    if isinstance(node, Or):
        merged: dict[str, set[str]] = {}
        score = 1 << 30
        for a in node.args:
            r = _requirement(a)
            if r is None:
                return None
            for f, ps in r[0].items():
                merged.setdefault(f, set()).update(ps)
            score = min(score, r[1])
        return ({f: frozenset(ps) for f, ps in merged.items()}, score) if merged else None
    return None
