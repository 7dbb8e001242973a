from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fleetops.core.errors import ValidationError
from fleetops.core.lake import Lake, StagedFile
from fleetops.telemetry.ingest import STALE_REASON, Ingestor, RawMessage, SeqIndex

from .helpers import SIGNALS, T0_MS, make_vin, message, stream


def raw(items: list[tuple[str, bytes]]) -> list[RawMessage]:
    return [RawMessage(p, f"fleetops/v1/{vin}/signals", vin) for vin, p in items]


def count_rows(lake: Lake) -> tuple[int, int]:
    result = lake.query(
        "SELECT count(*) AS n, count(DISTINCT (vin, ts, signal)) AS d FROM signals"
    ).to_pylist()[0]
    return result["n"], result["d"]


def test_seq_index_runs_duplicates_and_window() -> None:
    index = SeqIndex(window=100)
    for seq in [0, 1, 2, 5, 4, 3, 10]:
        index.add("V", seq)
    assert index.to_json() == {"V": [[0, 5], [10, 10]]}
    assert index.verdict("V", 4) == "duplicate"
    assert index.verdict("V", 7) is None
    index.add("V", 500)
    assert index.verdict("V", 300) == STALE_REASON
    assert index.verdict("V", 450) is None
    assert index.verdict("W", 0) is None


def test_ingest_commits_rows_and_drops_redelivered_messages(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    ingestor = Ingestor(lake)
    first = list(stream(3, 4))
    ingestor.ingest(raw(first))
    ingestor.ingest(raw([*first[:5], message(0, 4)]))  # 5 redeliveries + 1 new
    assert ingestor.stats.duplicates == 5
    assert count_rows(lake) == (13 * 20 * len(SIGNALS),) * 2


def test_duplicates_within_one_batch_are_dropped(tmp_path: Path) -> None:
    ingestor = Ingestor(Lake(tmp_path))
    ingestor.ingest(raw([message(1, 0), message(1, 0)]))
    assert ingestor.stats.duplicates == 1
    assert count_rows(Lake(tmp_path))[0] == 20 * len(SIGNALS)


def test_index_survives_restart_with_and_without_checkpoint(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    ingestor = Ingestor(lake, checkpoint_every=2)
    for seq in range(5):
        ingestor.ingest(raw([message(0, seq)]))
    # no close(): batches 5 is only in the commit log, 1-4 in the checkpoint
    again = Ingestor(lake, checkpoint_every=2)
    again.ingest(raw([message(0, s) for s in range(6)]))
    assert again.stats.duplicates == 5
    assert count_rows(lake) == (6 * 20 * len(SIGNALS),) * 2


def test_crash_after_commit_point_rolls_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path)
    ingestor = Ingestor(lake)

    def crash(self: StagedFile) -> Path:
        raise SystemExit("killed between commit record and rename")

    monkeypatch.setattr(StagedFile, "publish", crash)
    with pytest.raises(SystemExit):
        ingestor.ingest(raw([message(2, 0), message(2, 1)]))
    monkeypatch.undo()
    assert count_rows(lake)[0] == 0  # nothing visible yet
    restarted = Ingestor(lake)  # recovery renames the committed files
    assert count_rows(lake)[0] == 2 * 20 * len(SIGNALS)
    restarted.ingest(raw([message(2, 0), message(2, 1)]))  # the transport redelivers
    assert count_rows(lake) == (2 * 20 * len(SIGNALS),) * 2


def test_crash_before_commit_point_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path)
    ingestor = Ingestor(lake)

    def crash(*args: object) -> None:
        raise SystemExit("killed before the commit record")

    monkeypatch.setattr(ingestor, "_write_commit", crash)
    with pytest.raises(SystemExit):
        ingestor.ingest(raw([message(3, 0)]))
    assert list(tmp_path.rglob("*.tmp"))
    restarted = Ingestor(lake)
    assert not list(tmp_path.rglob("*.tmp"))
    restarted.ingest(raw([message(3, 0)]))
    assert count_rows(lake) == (20 * len(SIGNALS),) * 2


def test_bad_input_goes_to_dead_letter_with_reason_and_ingest_goes_on(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    ingestor = Ingestor(lake, max_payload_bytes=4096)
    vin = make_vin(9)
    good_vin, good = message(9, 0)
    bad = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"vin": vin, "seq": 1, "ts": T0_MS}),
        orjson.dumps({"vin": "SHORT", "seq": 1, "ts": T0_MS, "signals": {}}),
        orjson.dumps({"vin": vin, "seq": 2, "ts": 5, "signals": {"Vehicle.Speed": 1}}),
        orjson.dumps({"vin": vin, "seq": 3, "ts": T0_MS, "signals": {"Vehicle.Nope": 1}}),
        orjson.dumps({"vin": vin, "seq": 4, "ts": T0_MS, "signals": {"Vehicle.Speed": "fast"}}),
        orjson.dumps({"vin": vin, "seq": 5, "ts": T0_MS, "signals": {"Vehicle.Speed": 9000}}),
        orjson.dumps(
            {"vin": vin, "seq": 6, "ts": T0_MS, "signals": {"Vehicle.Speed": 1, "pad": "x" * 5000}}
        ),
    ]
    batch = ingestor.ingest([RawMessage(p, "test", None) for p in bad] + raw([(good_vin, good)]))
    reasons = lake.query("SELECT reason FROM dead_letter").column("reason").to_pylist()
    assert len(reasons) == len(bad) == len(batch.dead)
    for expected in (
        "malformed JSON",
        "not a JSON object",
        "missing field(s): signals",
        "has 5 characters",
        "absurd timestamp",
        "unknown signal 'Vehicle.Nope'",
        "wrong type",
        "out of range",
        "oversize payload",
    ):
        assert any(expected in r for r in reasons), expected
    assert count_rows(lake)[0] == 20 * len(SIGNALS)  # the good message still landed
    payloads = lake.query("SELECT payload FROM dead_letter").column("payload").to_pylist()
    assert b"{not json" in payloads  # the raw bytes are kept for replay


def test_topic_vin_must_match_payload_vin(tmp_path: Path) -> None:
    ingestor = Ingestor(Lake(tmp_path))
    _, payload = message(1, 0)
    batch = ingestor.ingest([RawMessage(payload, "fleetops/v1/X/signals", make_vin(2))])
    assert len(batch.dead) == 1 and "differs" in batch.dead[0].reason


def test_consumer_name_must_be_safe_for_file_names(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="consumer name"):
        Ingestor(Lake(tmp_path), consumer="../escape")
