"""Load Sigma rules with pySigma and evaluate them over event batches as Polars columns.

A :class:`RuleSet` holds compiled rules (:class:`CompiledRule`) and the refusals (path and
reason) of rules it cannot evaluate. :meth:`RuleSet.evaluate` resolves every field the
rules read against the batch's native ``fields`` (exact name, then case-insensitive), then
against its OCSF ``events`` columns, partitions the events by their Sigma logsource
(product, category, service) and, per partition, evaluates all the rules that apply to it
in one Polars ``select``: each event group is filtered once and each rule is one
expression over whole columns.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import polars as pl
import yaml
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetectionItem, SigmaRule

from fleetops.core.errors import ValidationError
from fleetops.core.ocsf import ENTITY_COLUMNS, FINDING_SCHEMA, EventBatch, conform_findings
from fleetops.security.soc.sigma.ir import (
    KEYWORD_FIELD,
    Node,
    Or,
    Requirement,
    StrMatch,
    UnsupportedRuleError,
    fields_of,
    from_condition,
    requirement,
    simplify,
)
from fleetops.security.soc.sigma.naive import matches
from fleetops.security.soc.sigma.polars_eval import check_regex, lower_fields, lower_name, to_expr

SEVERITY_BY_LEVEL: Final[dict[str, int]] = {
    "informational": 1,
    "low": 2,
    "medium": 3,
    "high": 4,
    "critical": 5,
}

CATEGORY_ACCEPTS: Final[dict[str, frozenset[str]]] = {
    "registry_event": frozenset(
        {"registry_event", "registry_add", "registry_delete", "registry_set", "registry_rename"}
    ),
}
"""A rule's category → the event categories it applies to (Sigma's Windows taxonomy:
``registry_event`` covers Sysmon 12, 13 and 14)."""

SERVICE_ACCEPTS: Final[dict[str, frozenset[str]]] = {
    "auth": frozenset({"auth", "sshd", "sudo", "su", "login"}),
    "syslog": frozenset({"syslog", "auth", "sshd", "sudo", "su", "cron", "login", "kernel"}),
}
"""A rule's service → the event services it applies to (Linux ``auth`` covers the programs
that log to auth.log; ``syslog`` covers all syslog programs)."""

_RULE_EXTENSIONS: Final = (".yml", ".yaml")
_REGRESSION_INFO_KEY: Final = re.compile(
    r"^(rule_metadata|regression_tests_info)\s*:", re.MULTILINE
)
_DETECTION_KEY: Final = re.compile(r"^detection\s*:", re.MULTILINE)
_KEY_SEPARATOR: Final = "\x1f"
_ROW: Final = "\x00row"


class SigmaRuleError(ValidationError):
    """A Sigma rule that cannot be loaded or evaluated (names the rule and the field)."""


@dataclass(frozen=True)
class CompiledRule:
    """One Sigma rule ready to evaluate."""

    rule_id: str
    title: str
    level: str | None
    techniques: tuple[str, ...]
    product: str | None
    category: str | None
    service: str | None
    node: Node
    path: str
    custom: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def severity_id(self) -> int:
        return SEVERITY_BY_LEVEL.get(self.level or "", 0)

    @property
    def fields(self) -> list[str]:
        return fields_of(self.node)

    def applies_to(self, product: str | None, category: str | None, service: str | None) -> bool:
        """Whether events of this logsource are what the rule is written for."""
        if self.product is not None and (product or "").lower() != self.product:
            return False
        if self.category is not None:
            accepted = CATEGORY_ACCEPTS.get(self.category, frozenset({self.category}))
            if (category or "").lower() not in accepted:
                return False
        if self.service is not None:
            accepted = SERVICE_ACCEPTS.get(self.service, frozenset({self.service}))
            if (service or "").lower() not in accepted:
                return False
        return True


@dataclass(frozen=True)
class Refusal:
    """A rule (or file) that was not loaded, and why."""

    path: str
    reason: str


def techniques_from_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """``attack.t1003.001`` → ``T1003.001``; ``atm.atm-t0012`` → ``ATM-T0012``."""
    out: dict[str, None] = {}
    for tag in tags:
        namespace, _, name = tag.partition(".")
        namespace = namespace.lower()
        if (namespace == "attack" and re.fullmatch(r"t\d{4}(\.\d{3})?", name.lower())) or (
            namespace == "atm" and name
        ):
            out[name.upper()] = None
    return tuple(out)


def _rule_label(doc: Any, path: str) -> str:
    if isinstance(doc, dict):
        title = doc.get("title")
        rule_id = doc.get("id")
        if title or rule_id:
            return f"rule {title!r} ({rule_id or 'no id'}) in {path}"
    return f"rule in {path}"


def _failing_field(doc: Any) -> str | None:
    """Which detection field pySigma refuses (each detection item tried on its own)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("detection"), dict):
        return None
    for name, definition in doc["detection"].items():
        if name in ("condition", "timeframe"):
            continue
        items = definition if isinstance(definition, list) else [definition]
        for item in items:
            if not isinstance(item, dict):
                continue
            for key, value in item.items():
                try:
                    SigmaDetectionItem.from_mapping(key, value)
                except SigmaError:
                    return f"{name}.{key}"
    return None


def compile_rule(rule: SigmaRule, path: str) -> CompiledRule:
    """A pySigma rule → :class:`CompiledRule` (raises :class:`UnsupportedRuleError`)."""
    if rule.errors:
        raise UnsupportedRuleError("; ".join(str(e) for e in rule.errors))
    conditions = rule.detection.parsed_condition
    nodes = [from_condition(c.parse()) for c in conditions]
    node = simplify(nodes[0] if len(nodes) == 1 else Or(tuple(nodes)))
    _check_regexes(node)
    logsource = rule.logsource
    return CompiledRule(
        rule_id=str(rule.id) if rule.id else rule.title,
        title=rule.title,
        level=str(rule.level) if rule.level else None,
        techniques=techniques_from_tags(str(t) for t in rule.tags),
        product=logsource.product.lower() if logsource.product else None,
        category=logsource.category.lower() if logsource.category else None,
        service=logsource.service.lower() if logsource.service else None,
        node=node,
        path=path,
        custom=dict(rule.custom_attributes),
    )


def _check_regexes(node: Node) -> None:
    from fleetops.security.soc.sigma.ir import And, Not

    if isinstance(node, And | Or):
        for a in node.args:
            _check_regexes(a)
    elif isinstance(node, Not):
        _check_regexes(node.arg)
    elif isinstance(node, StrMatch) and node.kind == "regex":
        check_regex(node.field, node.pattern)


def _load_text(text: str, path: str) -> tuple[list[CompiledRule], list[Refusal]]:
    rules: list[CompiledRule] = []
    refused: list[Refusal] = []
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [], [Refusal(path, f"not valid YAML: {exc}")]
    label = _rule_label(docs[0] if docs else None, path)
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True)
    except SigmaError as exc:
        return [], [Refusal(path, f"{label}: {exc}")]
    if collection.errors:
        where = _failing_field(docs[0] if docs else None)
        detail = "; ".join(str(e) for e in collection.errors)
        reason = f"{label}: {detail}" + (f" (field {where})" if where else "")
        return [], [Refusal(path, reason)]
    for item in collection.rules:
        if not isinstance(item, SigmaRule):
            kind = type(item).__name__.removeprefix("Sigma")
            refused.append(
                Refusal(
                    path,
                    f"rule {item.title!r} ({item.id}): {kind} rules (aggregation over many "
                    "events / meta rules) are not supported by the per-event engine",
                )
            )
            continue
        name = f"rule {item.title!r} ({item.id}) in {path}"
        try:
            rules.append(compile_rule(item, path))
        except (UnsupportedRuleError, SigmaError, ValueError, TypeError, AttributeError) as exc:
            refused.append(Refusal(path, f"{name}: {exc}"))
    return rules, refused


def _is_regression_metadata(text: str) -> bool:
    """SigmaHQ's ``regression_data/**/info.yml``: test metadata, no detection."""
    return _REGRESSION_INFO_KEY.search(text) is not None and _DETECTION_KEY.search(text) is None


def rule_files(paths: Sequence[Path | str]) -> list[Path]:
    """Every ``.yml``/``.yaml`` file under ``paths`` (files given directly are kept)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.suffix in _RULE_EXTENSIONS and p.is_file())
            )
        elif path.is_file():
            files.append(path)
        else:
            raise SigmaRuleError(f"rule path {path} does not exist")
    return files


@dataclass
class RuleSet:
    """Compiled Sigma rules and the ones refused, ready to evaluate over event batches."""

    rules: list[CompiledRule]
    refused: list[Refusal] = field(default_factory=list)
    _exprs: dict[int, pl.Expr] = field(default_factory=dict, init=False, repr=False)
    _requirements: dict[int, Requirement | None] = field(
        default_factory=dict, init=False, repr=False
    )

    @classmethod
    def load(cls, paths: Sequence[Path | str], *, strict: bool = False) -> RuleSet:
        """Rules from files and folders; ``strict`` raises on the first refused rule."""
        rules: list[CompiledRule] = []
        refused: list[Refusal] = []
        for path in rule_files(paths):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                refused.append(Refusal(str(path), f"cannot read: {exc}"))
                continue
            if _is_regression_metadata(text):
                continue  # a SigmaHQ regression test's info.yml beside the rules: not a rule
            got, bad = _load_text(text, str(path))
            rules.extend(got)
            refused.extend(bad)
        if strict and refused:
            raise SigmaRuleError(refused[0].reason)
        return cls(rules, refused)

    @classmethod
    def from_yaml(cls, text: str, *, path: str = "<string>", strict: bool = True) -> RuleSet:
        """Rules from YAML text; ``strict`` (default) raises :class:`SigmaRuleError` if refused."""
        rules, refused = _load_text(text, path)
        if strict and refused:
            raise SigmaRuleError(refused[0].reason)
        return cls(rules, refused)

    # -- evaluation -----------------------------------------------------------------

    def _groups(self, events: pl.DataFrame) -> tuple[pl.Series, list[tuple[list[str], list[int]]]]:
        """Per event: its logsource key; per distinct set of applicable rules: (keys, rules)."""
        keys = events.select(
            pl.concat_str(
                [
                    pl.col(c).str.to_lowercase().fill_null("")
                    for c in ("logsource_product", "logsource_category", "logsource_service")
                ],
                separator=_KEY_SEPARATOR,
            ).alias("key")
        )["key"]
        by_rules: dict[tuple[int, ...], list[str]] = {}
        for key in keys.unique().to_list():
            product, category, service = (part or None for part in key.split(_KEY_SEPARATOR))
            applicable = tuple(
                i for i, r in enumerate(self.rules) if r.applies_to(product, category, service)
            )
            if applicable:
                by_rules.setdefault(applicable, []).append(key)
        return keys, [(k, list(r)) for r, k in by_rules.items()]

    def _field_frame(self, batch: EventBatch, names: Iterable[str]) -> pl.DataFrame:
        """One String column per field name: native field, else OCSF column, else null."""
        native = batch.fields
        native_lower = {c.lower(): c for c in reversed(native.columns)}
        ocsf_lower = {c.lower(): c for c in batch.events.columns}
        columns: list[pl.Series] = []
        for name in names:
            if name == KEYWORD_FIELD:
                text = batch.events.select(
                    pl.coalesce(pl.col("raw"), pl.col("message")).alias(name)
                ).to_series()
                columns.append(text)
                continue
            if name in native.columns:
                series = native[name]
            elif name.lower() in native_lower:
                series = native[native_lower[name.lower()]]
            elif name in batch.events.columns or name.lower() in ocsf_lower:
                series = batch.events[ocsf_lower.get(name.lower(), name)]
            else:
                series = pl.repeat(None, batch.events.height, dtype=pl.String, eager=True)
            if series.dtype != pl.String:
                series = series.cast(pl.String)
            columns.append(series.alias(name))
        return pl.DataFrame(columns, height=batch.events.height)

    def _expr(self, i: int) -> pl.Expr:
        cached = self._exprs.get(i)
        if cached is None:
            cached = self._exprs[i] = to_expr(self.rules[i].node).alias(str(i))
        return cached

    def _requirement(self, i: int) -> Requirement | None:
        if i not in self._requirements:
            self._requirements[i] = requirement(self.rules[i].node)
        return self._requirements[i]

    def _run(self, frame: pl.DataFrame, rule_ids: list[int], out: dict[int, list[int]]) -> None:
        """Evaluate ``rule_ids`` over ``frame`` (one select), adding matched rows to ``out``."""
        if not rule_ids or frame.height == 0:
            return
        lowers: set[str] = set()
        for i in rule_ids:
            lowers |= lower_fields(self.rules[i].node)
        if lowers:
            frame = frame.with_columns(
                [pl.col(f).str.to_lowercase().alias(lower_name(f)) for f in sorted(lowers)]
            )
        result = frame.select([pl.col(_ROW), *(self._expr(i) for i in rule_ids)])
        rows = result[_ROW]
        for i in rule_ids:
            hit = rows.filter(result[str(i)])
            if hit.len():
                out.setdefault(i, []).extend(hit.to_list())

    def match_rows(self, batch: EventBatch) -> dict[int, list[int]]:
        """Rule index → the (0-based) event rows it matches, evaluated as columns.

        Per logsource group: rules without a literal requirement run over all the group's
        events; the others run only over the events that contain one of their literals
        (one Aho-Corasick pass per field), and only if one of their literals occurs at all.
        """
        if not self.rules or batch.events.height == 0:
            return {}
        keys, groups = self._groups(batch.events)
        if not groups:
            return {}
        needed: dict[str, None] = {}
        for _, rule_ids in groups:
            for i in rule_ids:
                needed.update(dict.fromkeys(self.rules[i].fields))
        frame = self._field_frame(batch, needed).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(_ROW)
        )
        out: dict[int, list[int]] = {}
        for group_keys, rule_ids in groups:
            group = frame
            if len(groups) > 1 or len(group_keys) != keys.n_unique():
                group = frame.filter(keys.is_in(group_keys))
            free = [i for i in rule_ids if self._requirement(i) is None]
            self._run(group, free, out)
            constrained = [i for i in rule_ids if self._requirement(i) is not None]
            if not constrained:
                continue
            literals: dict[str, set[str]] = {}
            for i in constrained:
                for f, ps in (self._requirement(i) or {}).items():
                    literals.setdefault(f, set()).update(ps)
            patterns = {f: sorted(ps) for f, ps in literals.items()}
            candidates = group.filter(
                pl.any_horizontal(
                    [
                        pl.col(f).str.contains_any(ps, ascii_case_insensitive=True).fill_null(False)
                        for f, ps in patterns.items()
                    ]
                )
            )
            if candidates.height == 0:
                continue
            if candidates.height * 20 > group.height:  # literals too common to skip rules
                self._run(candidates, constrained, out)
                continue
            present = {
                f: set(
                    candidates.select(
                        pl.col(f)
                        .str.extract_many(ps, ascii_case_insensitive=True, overlapping=True)
                        .explode()
                        .str.to_lowercase()
                        .unique()
                    )
                    .to_series()
                    .drop_nulls()
                    .to_list()
                )
                for f, ps in patterns.items()
            }
            active = [
                i
                for i in constrained
                if any(present[f] & ps for f, ps in (self._requirement(i) or {}).items())
            ]
            self._run(candidates, active, out)
        return {i: sorted(rows) for i, rows in sorted(out.items())}

    def evaluate(self, batch: EventBatch) -> pl.DataFrame:
        """Findings (:data:`FINDING_SCHEMA` rows) for every rule match in ``batch``."""
        hits = self.match_rows(batch)
        return self._findings(batch, hits)

    def _findings(self, batch: EventBatch, hits: dict[int, list[int]]) -> pl.DataFrame:
        if not hits:
            return pl.DataFrame(schema=FINDING_SCHEMA)
        frames: list[pl.DataFrame] = []
        events = batch.events
        for i, rows in sorted(hits.items()):
            rule = self.rules[i]
            index = pl.Series(sorted(rows), dtype=pl.Int64)
            picked = events[index]
            evidence_fields = [f for f in rule.fields if f != KEYWORD_FIELD]
            field_frame = (
                self._field_frame(batch, evidence_fields)[index] if evidence_fields else None
            )
            evidence = (
                [
                    orjson.dumps({k: v for k, v in row.items() if v is not None}).decode()
                    for row in field_frame.iter_rows(named=True)
                ]
                if field_frame is not None
                else ["{}"] * len(index)
            )
            uids = [
                hashlib.sha256(f"{rule.rule_id}|{src}|{rec}|{row}".encode()).hexdigest()[:32]
                for src, rec, row in zip(
                    picked["source_file"].to_list(),
                    picked["record_index"].to_list(),
                    index.to_list(),
                    strict=True,
                )
            ]
            frames.append(
                picked.select(
                    "time",
                    "domain",
                    *ENTITY_COLUMNS,
                    "source_file",
                    "record_index",
                ).with_columns(
                    pl.Series("finding_uid", uids, dtype=pl.String),
                    pl.lit("sigma").alias("source"),
                    pl.lit(rule.rule_id).alias("rule_id"),
                    pl.lit(rule.title).alias("title"),
                    pl.lit(rule.severity_id, dtype=pl.Int32).alias("severity_id"),
                    pl.lit(pl.Series([list(rule.techniques)], dtype=pl.List(pl.String)))
                    .first()
                    .alias("techniques"),
                    pl.lit(None, dtype=pl.Float64).alias("score"),
                    pl.Series("evidence", evidence, dtype=pl.String),
                )
            )
        return conform_findings(pl.concat([conform_findings(f) for f in frames], how="vertical"))


class NaiveMatcher:
    """The same compiled rules, evaluated per event in a Python loop (the baseline)."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def match_rows(self, batch: EventBatch) -> dict[int, list[int]]:
        events = batch.events
        products = events["logsource_product"].to_list()
        categories = events["logsource_category"].to_list()
        services = events["logsource_service"].to_list()
        needed: dict[str, None] = {}
        for rule in self.rules.rules:
            needed.update(dict.fromkeys(rule.fields))
        frame = self.rules._field_frame(batch, needed)
        applicable: dict[tuple[str | None, str | None, str | None], list[int]] = {}
        out: dict[int, list[int]] = {}
        for row_index, row in enumerate(frame.iter_rows(named=True)):
            key = (products[row_index], categories[row_index], services[row_index])
            rule_ids = applicable.get(key)
            if rule_ids is None:
                rule_ids = [i for i, r in enumerate(self.rules.rules) if r.applies_to(*key)]
                applicable[key] = rule_ids
            for i in rule_ids:
                if matches(self.rules.rules[i].node, row):
                    out.setdefault(i, []).append(row_index)
        return out

    def evaluate(self, batch: EventBatch) -> pl.DataFrame:
        return self.rules._findings(batch, self.match_rows(batch))
