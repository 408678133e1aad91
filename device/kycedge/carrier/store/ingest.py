"""Batched ingest statements of the carrier store (mixed into ``SqlStore``).

Per batch, not per envelope: one lookup statement per stage (message ids, enrolments,
references: joins of a ``VALUES`` list on the primary keys) and, in the ingest
transaction, one neighbour lookup plus multi-row ``INSERT … ON CONFLICT DO NOTHING
RETURNING`` for sequence claims, receipts and templates. Multi-row statements
interpolate only ``?`` placeholders (never values) into the SQL text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kycedge.carrier.store.schema import (
    Commit,
    ConflictHandler,
    DeviceRecord,
    Recorded,
    ReferenceRecord,
    StoredReceipt,
)
from kycedge.core.errors import CarrierError

__all__ = ["LOOKUP_CHUNK", "WRITE_CHUNK", "IngestOps", "device_from_row", "reference_from_row"]


class IngestOps:
    """The batch lookups and the atomic batch write; ``SqlStore`` provides the seam."""

    if TYPE_CHECKING:  # provided by SqlStore
        def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        def _run(self, what: str, fn: Callable[[], Any], attempts: int = 3) -> Any: ...
        def _read(self, what: str, fn: Callable[[], Any]) -> Any: ...

    # -- batch lookups (one statement per chunk of keys, not one per envelope) -----------

    def get_devices(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], DeviceRecord]:
        """Enrolments by ``(tenant, device_id, key_id)``; missing keys are absent."""

        if not keys:
            return {}

        def get() -> dict[tuple[str, str, str], DeviceRecord]:
            out: dict[tuple[str, str, str], DeviceRecord] = {}
            for chunk in _chunks(sorted(set(keys)), LOOKUP_CHUNK):
                rows = self._exec(
                    "SELECT d.tenant, d.device_id, d.key_id, d.public_key, d.status, d.enrolled_at_ms, "  # noqa: S608
                    "d.revoked_at_ms, d.signature_alg, d.key_protection, d.attestation "
                    f"FROM (VALUES {_values(len(chunk), 3)}) AS k JOIN devices AS d "
                    "ON d.tenant = k.column1 AND d.device_id = k.column2 AND d.key_id = k.column3",
                    [v for key in chunk for v in key],
                ).fetchall()
                for r in rows:
                    rec = device_from_row(r)
                    out[(rec.tenant, rec.device_id, rec.key_id)] = rec
            return out

        res: dict[tuple[str, str, str], DeviceRecord] = self._read("device lookup", get)
        return res

    def find_receipts(self, message_ids: Sequence[str]) -> dict[str, StoredReceipt]:
        """Recorded receipts by message id; unrecorded ids are absent."""

        if not message_ids:
            return {}

        def get() -> dict[str, StoredReceipt]:
            out: dict[str, StoredReceipt] = {}
            for chunk in _chunks(sorted(set(message_ids)), LOOKUP_CHUNK):
                rows = self._exec(
                    "SELECT message_id, envelope_hash, receipt, status, reason FROM receipts "  # noqa: S608
                    f"WHERE message_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for r in rows:
                    out[str(r[0])] = StoredReceipt(bytes(r[1]), bytes(r[2]), str(r[3]), str(r[4]))
            return out

        res: dict[str, StoredReceipt] = self._read("receipt lookup", get)
        return res

    def get_references(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ReferenceRecord]:
        """Reference rows by ``(tenant, reference)``; missing keys are absent."""

        if not keys:
            return {}

        def get() -> dict[tuple[str, str], ReferenceRecord]:
            out: dict[tuple[str, str], ReferenceRecord] = {}
            for chunk in _chunks(sorted(set(keys)), LOOKUP_CHUNK):
                rows = self._exec(
                    "SELECT r.tenant, r.reference, r.model_id, r.model_version, r.threshold, r.dim, "  # noqa: S608
                    f"r.template_ct, r.created_at_ms FROM (VALUES {_values(len(chunk), 2)}) AS k "
                    "JOIN reference_templates AS r ON r.tenant = k.column1 AND r.reference = k.column2",
                    [v for key in chunk for v in key],
                ).fetchall()
                for r in rows:
                    rec = reference_from_row(r)
                    out[(rec.tenant, rec.reference)] = rec
            return out

        res: dict[tuple[str, str], ReferenceRecord] = self._read("reference lookup", get)
        return res

    def record_batch(self, commits: Sequence[Commit], on_conflict: ConflictHandler) -> list[Recorded]:
        """Write every commit atomically, all in ONE transaction (one fsync per batch).

        1. Sequence claims: one SELECT fetches the stored ``seq - 1``, ``seq``, ``seq + 1``
           rows of every commit that consumes a sequence number; a number already taken,
           or a neighbour contradicting the chain (``seq - 1``'s digest must equal our
           ``prev_digest``; ``seq + 1``'s ``prev_digest`` must equal our digest; earlier
           commits of this batch count as stored) is a conflict. The claims are inserted
           in one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``; a claim another
           process inserted meanwhile is a conflict too. A conflicting message id that is
           already recorded keeps its first receipt; otherwise ``on_conflict`` gives the
           replacement (the ``replayed`` rejection).
        2. All receipts in one multi-row ``INSERT … ON CONFLICT (message_id) DO NOTHING
           RETURNING message_id``. A message id that was not inserted is already recorded
           (a redelivery, or another receiver process won the race): its FIRST receipt is
           returned, and the sequence row this batch claimed for it is deleted again.
        3. The accepted templates in one multi-row INSERT.

        A message id appearing twice in ``commits`` is written once; the later copies get
        the first's receipt with ``first=False``. Rows are written in message-id order, so
        concurrent batches holding the same messages lock in the same order (no deadlock
        on PostgreSQL).
        """
        firsts: dict[str, int] = {}
        for i in sorted(range(len(commits)), key=lambda i: commits[i].message_id):
            firsts.setdefault(commits[i].message_id, i)

        def batch() -> list[Recorded]:
            done: dict[str, Recorded] = {}
            final: dict[str, Commit] = {}
            conflicts: list[tuple[Commit, str]] = []
            claims = self._check_claims([commits[i] for i in firsts.values()], conflicts)
            claimed = self._insert_sequences(claims)
            for c in claims:
                if c.message_id in claimed:
                    final[c.message_id] = c
                else:
                    conflicts.append((c, f"sequence {c.seq} taken meanwhile by another message"))
            for i in firsts.values():
                if commits[i].seq is None:
                    final[commits[i].message_id] = commits[i]
            if conflicts:
                existing = self._existing_many([c.message_id for c, _ in conflicts])
                for c, why in conflicts:
                    if c.message_id in existing:
                        done[c.message_id] = existing[c.message_id]
                        continue
                    r = on_conflict(c, why)
                    if r.seq is not None or r.template is not None:  # pragma: no cover - misuse
                        raise CarrierError("on_conflict must return a commit without seq and template")
                    final[c.message_id] = r
            ordered = [final[mid] for mid in sorted(final)]
            inserted = self._insert_receipts(ordered)
            for c in ordered:
                mid = c.message_id
                if mid in inserted:
                    done[mid] = Recorded(mid, c.receipt, c.status, c.reason, first=True)
                    continue
                if mid in claimed:
                    self._exec(
                        "DELETE FROM sequences WHERE tenant = ? AND device_id = ? AND key_id = ? AND seq = ? "
                        "AND message_id = ?",
                        (c.tenant, c.device_id, c.key_id, c.seq, mid),
                    )
                first = self._existing_many([mid]).get(mid)
                if first is None:  # pragma: no cover - the conflicting row must exist
                    raise CarrierError(f"receipt for {mid}: expected a stored receipt, got none")
                done[mid] = first
            self._insert_templates([c for c in ordered if c.message_id in inserted and c.template])
            return [
                done[c.message_id] if firsts[c.message_id] == i
                else dataclasses.replace(done[c.message_id], first=False)
                for i, c in enumerate(commits)
            ]

        out: list[Recorded] = self._run("ingest", batch)
        return out

    def _check_claims(self, commits: list[Commit], conflicts: list[tuple[Commit, str]]) -> list[Commit]:
        """The sequence-consuming commits (in message-id order) whose claim is consistent
        with the stored sequences and with the earlier claims of this batch; the others
        go to ``conflicts`` with the reason."""
        wanted = [c for c in commits if c.seq is not None]
        if not wanted:
            return []
        keys = sorted({(c.tenant, c.device_id, c.key_id, n)
                       for c in wanted for n in (c.seq - 1, c.seq, c.seq + 1)})  # type: ignore[operator]
        known: dict[tuple[str, str, str, int], tuple[str, bytes, bytes]] = {}
        for chunk in _chunks(keys, LOOKUP_CHUNK):
            rows = self._exec(
                "SELECT s.tenant, s.device_id, s.key_id, s.seq, s.message_id, s.digest, s.prev_digest "  # noqa: S608
                f"FROM (VALUES {_values(len(chunk), 4)}) AS k JOIN sequences AS s ON s.tenant = k.column1 "
                "AND s.device_id = k.column2 AND s.key_id = k.column3 AND s.seq = k.column4",
                [v for key in chunk for v in key],
            ).fetchall()
            for r in rows:
                known[(str(r[0]), str(r[1]), str(r[2]), int(r[3]))] = (str(r[4]), bytes(r[5]), bytes(r[6]))
        ok: list[Commit] = []
        for c in wanted:
            assert c.seq is not None
            why = None
            taken, prev, nxt = (known.get((c.tenant, c.device_id, c.key_id, c.seq + d)) for d in (0, -1, 1))
            if taken is not None:
                why = f"sequence {c.seq} already used by message {taken[0]}"
            elif prev is not None and prev[1] != c.prev_digest:
                why = (f"chain broken: prev_digest expected {prev[1].hex()[:16]}… (message {prev[0]}, "
                       f"sequence {c.seq - 1}), got {c.prev_digest.hex()[:16]}…")
            elif nxt is not None and nxt[2] != c.digest:
                why = (f"chain broken: message {nxt[0]} (sequence {c.seq + 1}) names a different "
                       f"predecessor ({nxt[2].hex()[:16]}…) than this envelope")
            if why is None:
                known[(c.tenant, c.device_id, c.key_id, c.seq)] = (c.message_id, c.digest, c.prev_digest)
                ok.append(c)
            else:
                conflicts.append((c, why))
        return ok

    def _insert_sequences(self, claims: list[Commit]) -> set[str]:
        """Insert the claims; the message ids whose row was inserted (others lost a race)."""
        inserted: set[str] = set()
        for chunk in _chunks(claims, WRITE_CHUNK):
            rows = self._exec(
                "INSERT INTO sequences (tenant, device_id, key_id, seq, message_id, digest, "  # noqa: S608
                f"prev_digest, received_at_ms) VALUES {_values(len(chunk), 8)} "
                "ON CONFLICT DO NOTHING RETURNING message_id",
                [v for c in chunk for v in (c.tenant, c.device_id, c.key_id, c.seq, c.message_id, c.digest,
                                            c.prev_digest, c.received_at_ms)],
            ).fetchall()
            inserted.update(str(r[0]) for r in rows)
        return inserted

    def _insert_receipts(self, commits: list[Commit]) -> set[str]:
        inserted: set[str] = set()
        for chunk in _chunks(commits, WRITE_CHUNK):
            rows = self._exec(
                "INSERT INTO receipts (message_id, tenant, device_id, envelope_hash, status, reason, "  # noqa: S608
                f"receipt, received_at_ms) VALUES {_values(len(chunk), 8)} "
                "ON CONFLICT DO NOTHING RETURNING message_id",
                [v for c in chunk for v in (c.message_id, c.tenant, c.device_id, c.envelope_hash, c.status,
                                            c.reason, c.receipt, c.received_at_ms)],
            ).fetchall()
            inserted.update(str(r[0]) for r in rows)
        return inserted

    def _insert_templates(self, commits: list[Commit]) -> None:
        for chunk in _chunks(commits, WRITE_CHUNK):
            params: list[Any] = []
            for c in chunk:
                t = c.template
                assert t is not None
                params += (c.message_id, c.tenant, c.device_id, t.reference, t.model_id, t.model_version,
                           t.captured_at_ms, c.received_at_ms, t.template_ct)
            self._exec(
                "INSERT INTO templates (message_id, tenant, device_id, reference, model_id, model_version, "  # noqa: S608
                f"captured_at_ms, received_at_ms, template_ct) VALUES {_values(len(chunk), 9)} "
                "ON CONFLICT DO NOTHING",
                params,
            )

    def _existing_many(self, message_ids: list[str]) -> dict[str, Recorded]:
        out: dict[str, Recorded] = {}
        for chunk in _chunks(sorted(set(message_ids)), LOOKUP_CHUNK):
            rows = self._exec(
                "SELECT message_id, receipt, status, reason FROM receipts "  # noqa: S608
                f"WHERE message_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for r in rows:
                out[str(r[0])] = Recorded(str(r[0]), bytes(r[1]), str(r[2]), str(r[3]), first=False)
        return out


def device_from_row(row: Sequence[Any]) -> DeviceRecord:
    status = str(row[4])
    if status not in ("active", "revoked"):  # pragma: no cover - CHECK constraint
        raise CarrierError(f"device status: expected active or revoked, got {status!r}")
    return DeviceRecord(
        str(row[0]), str(row[1]), str(row[2]), bytes(row[3]),
        "active" if status == "active" else "revoked",
        int(row[5]), None if row[6] is None else int(row[6]), str(row[7]), str(row[8]),
        None if row[9] is None else bytes(row[9]),
    )


def reference_from_row(row: Sequence[Any]) -> ReferenceRecord:
    return ReferenceRecord(
        str(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]), int(row[5]), bytes(row[6]),
        int(row[7]),
    )


# Multi-row statements interpolate only "?" placeholders (never values) into the SQL.
LOOKUP_CHUNK = 256  # keys per lookup statement (parameters stay far below both backends' limits)
WRITE_CHUNK = 128  # rows per multi-row INSERT


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _values(rows: int, cols: int) -> str:
    one = "(" + ", ".join("?" * cols) + ")"
    return ", ".join([one] * rows)
