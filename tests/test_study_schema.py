"""A study database of the previous schema opens and is brought up to date; a newer one is refused."""

import sqlite3

import pytest

from xreal_bench.reader_study.storage import SCHEMA_VERSION, Storage, StorageError


def downgrade_to_v1(path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """DROP TABLE reader_design; DROP INDEX sign_in_failures_client; DROP TABLE sign_in_failures;
           ALTER TABLE readers DROP COLUMN revoked_at; UPDATE meta SET value = '1' WHERE key = 'schema_version';"""
    )
    conn.close()


def test_v1_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "study.sqlite"
    storage = Storage.create(path)
    with storage.write() as conn:
        storage.add_account(conn, "r1")
    storage.close()
    downgrade_to_v1(path)
    with Storage(path) as storage:
        assert storage.meta("schema_version") == str(SCHEMA_VERSION)
        columns = [row[1] for row in storage.conn.execute("PRAGMA table_info(readers)")]
        assert "revoked_at" in columns
        assert storage.conn.execute("SELECT name FROM readers").fetchall()[0][0] == "r1"
        storage.conn.execute("SELECT reader_id, seed, design FROM reader_design").fetchall()
        storage.conn.execute("SELECT client, at FROM sign_in_failures").fetchall()
    with Storage(path) as storage:  # idempotent: a second open changes nothing
        assert storage.meta("schema_version") == str(SCHEMA_VERSION)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "study.sqlite"
    Storage.create(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema 99 is newer"):
        Storage(path).meta("schema_version")
