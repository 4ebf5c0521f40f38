"""SQLAlchemy implementation of `bot.ports.Storage` (SQLite by default, PostgreSQL in production).

The application needs two calls: `await upgrade(url)` once at start (or `intake db upgrade`),
then `await create_storage(url)` for the handle it keeps for the process lifetime.
"""

from storage.migrate import current_revision, upgrade
from storage.sqlalchemy_storage import SqlStorage, create_storage

__all__ = ["SqlStorage", "create_storage", "current_revision", "upgrade"]
