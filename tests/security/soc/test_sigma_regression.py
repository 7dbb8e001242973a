"""SigmaHQ rules load unmodified and reproduce their recorded regression matches."""

from __future__ import annotations

import pytest

from fleetops.security.soc.sigma import run_regression
from tests.conftest import require_shared

pytestmark = pytest.mark.shared_data


@pytest.mark.parametrize("subfolder", ["rules", "."])
def test_all_rules_load_and_regression_matches(subfolder: str) -> None:
    # "." walks regression_data/ too: its info.yml files are test metadata, not rules.
    rules = require_shared("sigma_rules") / subfolder
    result = run_regression([rules])
    assert result["loaded"] >= 400, result["refused"][:5]
    assert result["refused"] == []
    assert len(result["regression"]) == 67
    for row in result["regression"]:
        assert row["matched"] is not None, row
        if row["expected"] is None:
            assert row["matched"] >= 1, row
        else:
            assert row["matched"] == row["expected"], row


def test_rules_test_cli_json(tmp_path: object) -> None:
    import orjson
    from typer.testing import CliRunner

    from fleetops.security.soc.sigma.cli import rules_app

    folder = require_shared("sigma_rules") / "rules" / "windows" / "builtin" / "wmi"
    result = CliRunner().invoke(rules_app, ["test", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["loaded"] == 1 and data["refused"] == []
    assert data["regression"][0]["matched"] == data["regression"][0]["expected"] == 1
