"""A report is added and read back by its reference on the driver's connection
(`storage.repositories.SqlReports`), stored as SQLAlchemy's types store it, so that every
other reader (the staff queue, the CLI, exports: SQLAlchemy) reads it the same. On PostgreSQL
the read by reference (the outbox's fan-out, in a unit of work of its own) runs outside a
transaction: one round trip instead of BEGIN, the read and the rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.ports import DuplicateError, StoredReport
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork
from tests.storage.conftest import BACKENDS

AT = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


def _report(reference: str = "R-1", conversation_id: str = "c1") -> StoredReport:
    return StoredReport(
        reference=reference,
        conversation_id=conversation_id,
        created_at=AT,
        channel="telegram",
        locale="uk",
        priority="urgent_review",
        data={"what": "Rosé – ünïcode ✓", "n": [1, None, True, 2.5], "nested": {"a": "b"}},
    )


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
async def test_a_report_reads_back_the_same_by_driver_and_by_sqlalchemy(
    storage: SqlStorage,
) -> None:
    async with storage.unit_of_work() as uow:
        await uow.reports.add(_report())
        # In the same transaction: what this unit of work wrote is seen.
        assert await uow.reports.get("R-1") == _report()
        with pytest.raises(DuplicateError):
            await uow.reports.add(_report(conversation_id="c2"))
        with pytest.raises(DuplicateError):
            await uow.reports.add(_report(reference="R-2"))
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("R-1") == _report()
        assert await uow.reports.get("R-404") is None
        assert await uow.reports.list() == [_report()]  # SQLAlchemy's read


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
async def test_a_report_left_uncommitted_is_not_kept(storage: SqlStorage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.reports.add(_report())
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("R-1") is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_reads_a_report_outside_a_transaction(storage: SqlStorage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.reports.add(_report())
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("R-1") == _report()
        assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
        assert not uow._db.in_transaction
