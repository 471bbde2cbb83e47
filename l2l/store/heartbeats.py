"""Controller heartbeats: which job loops are alive, for ``GET /health`` and operators.

A part of :class:`l2l.store.Store` (it inherits this class), kept apart so the store's
main module stays readable. Every write goes through the store's one session scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from l2l.store.records import ControllerRecord
from l2l.store.tables import ControllerRow, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ControllerHeartbeats:
    if TYPE_CHECKING:

        def _session(self, write: bool = True) -> AbstractContextManager[Session]: ...

    def beat(self, controller_id: str, host: str, pid: int) -> None:
        """Record that controller ``controller_id`` is alive now (creating its row the first time)."""
        now = utcnow()
        with self._session() as session:
            row = session.get(ControllerRow, controller_id, with_for_update=True)
            if row is None:
                row = ControllerRow(id=controller_id, host=host, pid=pid, started_at=now, heartbeat_at=now)
                session.add(row)
            else:
                row.heartbeat_at = now

    def remove_controller(self, controller_id: str) -> None:
        """A controller that stops cleanly says so: it no longer counts as alive."""
        with self._session() as session:
            session.execute(delete(ControllerRow).where(ControllerRow.id == controller_id))

    def forget_controllers_older_than(self, moment: datetime) -> int:
        """Drop rows of controllers silent since before ``moment`` (they died); how many."""
        with self._session() as session:
            result = session.execute(delete(ControllerRow).where(ControllerRow.heartbeat_at < moment))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def controllers(self) -> list[ControllerRecord]:
        """Every controller that has a row, the most recently heard from first."""
        with self._session(write=False) as session:
            rows = session.scalars(select(ControllerRow).order_by(ControllerRow.heartbeat_at.desc()))
            return list(_records(rows))


def _records(rows: Iterator[ControllerRow]) -> Iterator[ControllerRecord]:
    for row in rows:
        yield ControllerRecord(
            id=row.id,
            host=row.host,
            pid=row.pid,
            started_at=_aware(row.started_at),
            heartbeat_at=_aware(row.heartbeat_at),
        )


def _aware(moment: datetime) -> datetime:
    # SQLite hands datetimes back without a zone; every time stored here is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
