"""Sigma rules for the cyber defence centre: load with pySigma, evaluate as Polars columns.

``RuleSet.load(paths)`` compiles every rule it can and keeps the refusals (path and
reason); ``RuleSet.evaluate(batch)`` returns OCSF-style findings for an
:class:`~fleetops.core.ocsf.EventBatch`; ``run_regression(paths)`` is ``rules test``.
"""

from fleetops.security.soc.sigma.engine import (
    CompiledRule,
    NaiveMatcher,
    Refusal,
    RuleSet,
    SigmaRuleError,
    techniques_from_tags,
)
from fleetops.security.soc.sigma.regression import run_regression

__all__ = [
    "CompiledRule",
    "NaiveMatcher",
    "Refusal",
    "RuleSet",
    "SigmaRuleError",
    "run_regression",
    "techniques_from_tags",
]
