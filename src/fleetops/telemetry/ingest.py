"""Exactly-once ingest of vehicle messages into the lake, over an at-least-once transport.

A transport (MQTT, a file, the simulator in-process) hands over batches of raw messages;
:class:`Ingestor` validates them, drops those already committed, and commits the batch:

1. rows are staged as fsynced ``.tmp`` files (invisible to queries);
2. a commit record naming those files and the batch's ``(vin, seq)`` identities is
   written atomically — this is the commit point;
3. the files are renamed into place, and only then may the transport acknowledge.

On start-up :meth:`Ingestor.recover` finishes committed batches (roll forward) and
deletes the staged files of batches that never committed (their messages were not
acknowledged, so the transport delivers them again). Identities of committed messages
are kept per VIN as sorted runs of ``seq`` — a few numbers per vehicle — checkpointed
every few batches so start-up replays only recent commit records.

Several ingest processes may share one subscription (MQTT 5 ``$share/<group>/…``): each
is a *worker* of a ``group`` with its own commit log (``<lake>/_ingest/<group>/<worker>/``)
and its own file-name prefix. A message redelivered after a worker died may reach another
worker, so the group shares one seq index: every commit is decided under the group's lock
file, after reading what the other workers committed since (their commit records and
checkpoints), and a batch that overlaps a peer's fresher commit is decoded again without
the overlap. See docs/scale.md for the exact guarantee.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson

from fleetops.core.envelope import DecodedBatch, EnvelopeDecoder
from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import TMP_SUFFIX, Lake, StagedFile, atomic_write
from fleetops.core.vss import SignalCatalog, default_catalog

_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_WORKER_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
DEFAULT_WINDOW = 1_000_000  # seqs per VIN remembered behind the newest one
STALE_REASON = "seq older than the de-duplication window"


class RawMessage(NamedTuple):
    """One message as a transport received it."""

    payload: bytes
    source: str  # MQTT topic, file name, …
    vin: str | None = None  # the VIN the transport vouches for (e.g. from the topic)


class SeqIndex:
    """Which ``seq`` numbers of each VIN are committed, as sorted inclusive runs."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._runs: dict[str, list[list[int]]] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def verdict(self, vin: str, seq: int) -> str | None:
        """``None`` for a new message, ``"duplicate"``, or the stale reason."""
        runs = self._runs.get(vin)
        if not runs:
            return None
        if seq < runs[-1][1] - self.window:
            return STALE_REASON
        i = bisect.bisect_right(runs, [seq, float("inf")]) - 1
        if i >= 0 and runs[i][0] <= seq <= runs[i][1]:
            return "duplicate"
        return None

    def add_run(self, vin: str, lo: int, hi: int) -> None:
        """Mark ``lo..hi`` (inclusive) committed, merging with the runs it touches."""
        runs = self._runs.setdefault(vin, [])
        if not runs or lo > runs[-1][1] + 1:  # past the newest run: the common case
            runs.append([lo, hi])
        else:
            first = bisect.bisect_left(runs, lo - 1, key=lambda r: r[1])
            last = bisect.bisect_right(runs, hi + 1, key=lambda r: r[0]) - 1
            if first > last:
                runs.insert(first, [lo, hi])
            else:
                runs[first : last + 1] = [[min(lo, runs[first][0]), max(hi, runs[last][1])]]
        horizon = runs[-1][1] - self.window
        while runs[0][1] < horizon:
            runs.pop(0)

    def merge(self, data: dict[str, list[list[int]]]) -> None:
        """Add every run of another index's :meth:`to_json`."""
        for vin, runs in data.items():
            for lo, hi in runs:
                self.add_run(vin, int(lo), int(hi))

    def add(self, vin: str, seq: int) -> None:
        runs = self._runs.setdefault(vin, [])
        if runs and runs[-1][1] + 1 == seq:  # the common case: the next message in order
            runs[-1][1] = seq
        else:
            i = bisect.bisect_right(runs, [seq, float("inf")])
            if i > 0 and runs[i - 1][0] <= seq <= runs[i - 1][1]:
                return
            runs.insert(i, [seq, seq])
            self._merge_around(runs, i)
        horizon = runs[-1][1] - self.window
        while runs[0][1] < horizon:
            runs.pop(0)

    @staticmethod
    def _merge_around(runs: list[list[int]], i: int) -> None:
        if i + 1 < len(runs) and runs[i][1] + 1 == runs[i + 1][0]:
            runs[i][1] = runs.pop(i + 1)[1]
        if i > 0 and runs[i - 1][1] + 1 == runs[i][0]:
            runs[i - 1][1] = runs.pop(i)[1]

    def to_json(self) -> dict[str, list[list[int]]]:
        return self._runs

    @classmethod
    def from_json(cls, data: dict[str, list[list[int]]], window: int) -> SeqIndex:
        index = cls(window)
        index._runs = {vin: [list(r) for r in runs] for vin, runs in data.items()}
        return index


@dataclass
class IngestStats:
    """Running counters of one ingest process."""

    messages: int = 0
    values: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    dead_reasons: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, batch: DecodedBatch) -> None:
        self.messages += batch.messages
        self.values += batch.value_count
        self.duplicates += batch.duplicates
        self.dead_letters += len(batch.dead)
        self.batches += 1
        for letter in batch.dead:
            self.dead_reasons[_reason_class(letter.reason)] += 1

    def as_dict(self) -> dict[str, object]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "messages": self.messages,
            "values": self.values,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "values_per_s": round(self.values / elapsed),
            "dead_letter_reasons": dict(self.dead_reasons),
        }


def _reason_class(reason: str) -> str:
    """Group dead-letter reasons for counters ('unknown signal 'X'' → 'unknown signal')."""
    head = reason.split(":", 1)[0]
    for marker in (
        "unknown signal",
        "value out of range",
        "wrong type",
        "absurd timestamp",
        "oversize",
    ):
        if marker in reason:
            return marker
    return head if len(head) < 40 else head[:40]


class Ingestor:
    """Validates, de-duplicates and commits batches of vehicle messages into a lake.

    One ``consumer`` name per ingest process that shares a lake; it names the commit log
    (``<lake>/_ingest/<consumer>/``) and the process's staged files.

    With ``group``, the ingestor is the worker ``consumer`` of a group of processes that
    share one MQTT subscription: its log is ``<lake>/_ingest/<group>/<consumer>/``, its
    files are named ``part-<group>.<consumer>-…``, and duplicates are recognised across
    the whole group (see the module docstring). Two live processes may not use the same
    worker name of a group (the second gets a ConfigError).
    """

    def __init__(
        self,
        lake: Lake,
        *,
        catalog: SignalCatalog | None = None,
        consumer: str = "ingest",
        window: int = DEFAULT_WINDOW,
        checkpoint_every: int = 64,
        max_payload_bytes: int | None = None,
        group: str | None = None,
    ) -> None:
        if not _CONSUMER_NAME.match(consumer):
            raise ValidationError(
                f"consumer name {consumer!r}: use 1-64 letters, digits, '.', '_' or '-'"
            )
        if group is not None and not (_WORKER_NAME.match(group) and _WORKER_NAME.match(consumer)):
            raise ValidationError(
                f"group {group!r} / worker {consumer!r}: use 1-64 letters, digits or '_'"
            )
        self.lake = lake
        self.consumer = consumer
        self.group = group
        self.writer = consumer if group is None else f"{group}.{consumer}"
        self.decoder = (
            EnvelopeDecoder(catalog or default_catalog())
            if max_payload_bytes is None
            else EnvelopeDecoder(catalog or default_catalog(), max_payload_bytes=max_payload_bytes)
        )
        self.checkpoint_every = checkpoint_every
        self.stats = IngestStats()
        self._group_dir = lake.root / "_ingest" / group if group is not None else None
        self._log = (
            self._group_dir / consumer
            if self._group_dir is not None
            else lake.root / "_ingest" / consumer
        )
        self._commits = self._log / "commits"
        self._commits.mkdir(parents=True, exist_ok=True)
        self.index = SeqIndex(window)
        self._batch_no = 0
        self._peers: dict[str, _PeerState] = {}
        self._owner_fd: int | None = None
        if self._group_dir is not None:
            self._owner_fd = _lock_exclusive(self._log / "owner.lock", blocking=False)
            if self._owner_fd is None:
                raise ConfigError(
                    f"ingest worker {consumer!r} of group {group!r} already runs on this lake "
                    "(give each worker its own --worker name)"
                )
        self.recover()

    # -- the commit protocol -----------------------------------------------------------------

    def ingest(self, messages: Iterable[RawMessage]) -> DecodedBatch:
        """Commit one batch; when this returns, the batch is durable and may be acknowledged."""
        if self._group_dir is not None:
            return self._ingest_in_group(list(messages))
        batch = self._decode(messages)
        staged = self._stage(batch)
        if staged or batch.keys:
            self._batch_no += 1
            self._write_commit(self._batch_no, staged, batch.keys)
            self._publish(staged, batch)
        self.stats.add(batch)
        return batch

    def _ingest_in_group(self, messages: list[RawMessage]) -> DecodedBatch:
        while True:
            with self._group_locked():
                self._refresh_peers()
            batch = self._decode(messages)
            staged = self._stage(batch)
            with self._group_locked():
                if self._refresh_peers() and any(
                    self.index.verdict(vin, seq) == "duplicate" for vin, seq in batch.keys
                ):
                    # a peer committed part of this batch meanwhile: decode again without it
                    for file in staged:
                        file.tmp_path.unlink(missing_ok=True)
                    continue
                if staged or batch.keys:
                    self._batch_no += 1
                    self._write_commit(self._batch_no, staged, batch.keys)
            if staged or batch.keys:
                self._publish(staged, batch)
            self.stats.add(batch)
            return batch

    def _decode(self, messages: Iterable[RawMessage]) -> DecodedBatch:
        batch = DecodedBatch()
        pending: set[tuple[str, int]] = set()

        for message in messages:
            expected = message.vin

            def admit(vin: str, seq: int, expected: str | None = expected) -> str | None:
                if expected is not None and vin != expected:
                    return f"VIN {vin} in the payload differs from {expected} of the source"
                if (vin, seq) in pending:
                    return "duplicate"
                verdict = self.index.verdict(vin, seq)
                if verdict is None:
                    pending.add((vin, seq))
                return verdict

            self.decoder.decode(message.payload, message.source, batch, admit)
        return batch

    def _stage(self, batch: DecodedBatch) -> list[StagedFile]:
        return [
            *self.lake.stage("signals", batch.signals_table(), writer=self.writer),
            *self.lake.stage("dead_letter", batch.dead_letter_table(), writer=self.writer),
        ]

    def _publish(self, staged: list[StagedFile], batch: DecodedBatch) -> None:
        for file in staged:
            file.publish()
        for vin, seq in batch.keys:
            self.index.add(vin, seq)
        if self._batch_no % self.checkpoint_every == 0:
            self.checkpoint()

    # -- the group's shared seq index ----------------------------------------------------------

    @contextmanager
    def _group_locked(self) -> Iterator[None]:
        """Serialise commit decisions (and checkpoints) of the group's workers."""
        if self._group_dir is None:
            yield
            return
        fd = _lock_exclusive(self._group_dir / "commit.lock", blocking=True)
        assert fd is not None
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _refresh_peers(self) -> bool:
        """Add what the group's other workers committed since the last look (under the lock).

        Returns whether anything was added.
        """
        if self._group_dir is None:
            return False
        added = False
        for folder in sorted(self._group_dir.iterdir()):
            if folder.name == self.consumer or not folder.is_dir():
                continue
            peer = self._peers.setdefault(folder.name, _PeerState())
            checkpoint = folder / "checkpoint.json"
            try:
                info = checkpoint.stat()
                token: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
            except FileNotFoundError:
                token = None
            if token is not None and token != peer.checkpoint_token:
                state = orjson.loads(checkpoint.read_bytes())
                self.index.merge(state["index"])
                peer.batch = max(peer.batch, int(state["batch"]))
                peer.checkpoint_token = token
                added = True
            commits = folder / "commits"
            numbers = (
                sorted(int(p.stem) for p in commits.glob("*.json")) if commits.is_dir() else []
            )
            for number in numbers:
                if number <= peer.batch:
                    continue
                record = orjson.loads((commits / f"{number:012d}.json").read_bytes())
                for vin, seqs in record["keys"].items():
                    for seq in seqs:
                        self.index.add(vin, seq)
                peer.batch = number
                added = True
        return added

    def _write_commit(
        self, number: int, staged: list[StagedFile], keys: list[tuple[str, int]]
    ) -> None:
        by_vin: dict[str, list[int]] = {}
        for vin, seq in keys:
            by_vin.setdefault(vin, []).append(seq)
        record = {
            "batch": number,
            "files": [str(f.final_path.relative_to(self.lake.root)) for f in staged],
            "keys": by_vin,
        }
        atomic_write(self._commits / f"{number:012d}.json", orjson.dumps(record))

    def checkpoint(self) -> None:
        """Persist the seq index and drop the commit records it covers."""
        with self._group_locked():
            self._checkpoint()

    def _checkpoint(self) -> None:
        state = {
            "batch": self._batch_no,
            "window": self.index.window,
            "index": self.index.to_json(),
        }
        atomic_write(self._log / "checkpoint.json", orjson.dumps(state))
        for record in self._commits.glob("*.json"):
            if int(record.stem) <= self._batch_no:
                record.unlink()

    def recover(self) -> None:
        """Bring the lake and the seq index to the last committed batch."""
        checkpoint = self._log / "checkpoint.json"
        if checkpoint.exists():
            state = orjson.loads(checkpoint.read_bytes())
            self.index = SeqIndex.from_json(state["index"], self.index.window)
            self._batch_no = int(state["batch"])
        for record_path in sorted(self._commits.glob("*.json")):
            record = orjson.loads(record_path.read_bytes())
            if record["batch"] <= self._batch_no:
                continue
            for relative in record["files"]:
                final = self.lake.root / relative
                tmp = final.with_name(final.name + TMP_SUFFIX)
                if tmp.exists():  # committed but not yet renamed: roll forward
                    StagedFile(tmp, final, 0).publish()
            for vin, seqs in record["keys"].items():
                for seq in seqs:
                    self.index.add(vin, seq)
            self._batch_no = max(self._batch_no, int(record["batch"]))
        # staged files of batches that never committed: their messages come again
        for table in ("signals", "dead_letter"):
            folder = self.lake.root / table
            if folder.is_dir():
                for orphan in folder.rglob(f"part-{self.writer}-*.parquet{TMP_SUFFIX}"):
                    orphan.unlink()
        with self._group_locked():
            self._refresh_peers()

    def close(self) -> None:
        self.checkpoint()
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None


@dataclass
class _PeerState:
    """How much of one peer worker's commit log this worker has read."""

    batch: int = 0
    checkpoint_token: tuple[int, int] | None = None


def _lock_exclusive(path: Path, *, blocking: bool) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if absent): its descriptor, or None if
    ``blocking`` is false and another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_message_file(path: Path, *, batch_messages: int = 5000) -> Iterator[list[RawMessage]]:
    """Batches of messages from a JSON-lines file (one vehicle message per line)."""
    batch: list[RawMessage] = []
    source = path.name
    with path.open("rb") as lines:
        for raw_line in lines:
            line = raw_line.strip()
            if not line:
                continue
            batch.append(RawMessage(line, source))
            if len(batch) >= batch_messages:
                yield batch
                batch = []
    if batch:
        yield batch
