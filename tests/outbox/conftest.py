from tests.storage.conftest import clock, database_url, storage

__all__ = ["clock", "database_url", "storage"]
