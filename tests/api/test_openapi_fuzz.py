"""schemathesis against the served OpenAPI document: no server error, no undocumented
status code, bodies that match their schemas — as admin, on a console of its own (the
fuzzer creates users and changes campaigns)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.helpers import Console, build_console


@pytest.fixture(scope="module")
def fuzzed(console: Console, tmp_path_factory: pytest.TempPathFactory) -> Console:
    return build_console(tmp_path_factory.mktemp("fuzz"), console.lake)


def test_api_conforms_to_its_openapi_document(fuzzed: Console) -> None:
    """Every operation of the document, a few generated cases each (schemathesis's Python
    API driving Hypothesis; its pytest plugin does not load under pytest 9)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)
    headers = fuzzed.auth("admin")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # Schema-valid is not always acceptable (a wrong current password, a paused
            # campaign paused again): those answer a documented 4xx, which is what we check.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
