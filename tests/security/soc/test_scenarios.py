"""The scenario generator: reproducible, labelled, in the formats the parsers read."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fleetops.security.soc.scenarios import FILE_FORMATS, SCENARIOS, generate


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    a = generate(5_000, seed=11).write(tmp_path / "a")
    b = generate(5_000, seed=11).write(tmp_path / "b")
    c = generate(5_000, seed=12).write(tmp_path / "c")
    for name in FILE_FORMATS:
        assert a[name].read_bytes() == b[name].read_bytes()
    assert any(a[n].read_bytes() != c[n].read_bytes() for n in FILE_FORMATS)


def test_truth_names_every_scenario_after_the_history() -> None:
    data = generate(10_000, seed=3)
    truth = data.truth()
    assert set(truth["scenario"].unique()) == set(SCENARIOS)
    events = data.events(scenario_column=True)
    assert events.height == 10_000 + truth.height
    assert data.benign_events == 10_000
    attacks = events.filter(pl.col("scenario") != "")
    assert attacks["time"].min() >= data.history_end  # type: ignore[operator]
    # truth rows point at the attack lines of each file
    for name, frame in data.files.items():
        rows = truth.filter(pl.col("source_file") == name)["record_index"].to_list()
        labels = frame["scenario"].to_list()
        assert all(labels[i - 1] != "" for i in rows)
        assert sum(1 for s in labels if s) == len(rows)


def test_no_attacks_means_no_truth() -> None:
    data = generate(3_000, seed=5, attacks=False)
    assert data.truth().height == 0


def test_bad_history() -> None:
    with pytest.raises(ValueError, match="history_days"):
        generate(1_000, days=3, history_days=3)


def test_files_parse_without_dead_letters(tmp_path: Path) -> None:
    parsers = pytest.importorskip("fleetops.security.soc.parsers")
    data = generate(5_000, seed=2)
    for name, path in data.write(tmp_path).items():
        batch = parsers.parse_file(path, FILE_FORMATS[name])
        assert batch.rejected == 0, (name, batch.dead_letters.head(3))
        assert batch.parsed == data.files[name].height
        reference = data.events().filter(pl.col("source_file") == name).sort("record_index")
        parsed = batch.events.sort("record_index")
        for column in ("user", "src_ip", "vin", "device", "url", "campaign_id"):
            if reference[column].null_count() < reference.height:
                assert parsed[column].to_list() == reference[column].to_list(), (name, column)
