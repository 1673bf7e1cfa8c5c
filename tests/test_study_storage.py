"""Storage: atomic idempotent submits, validation, audit, concurrency across processes, durability."""

import dataclasses
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study.storage import Storage, StorageError

RATING = {"anatomy_realism": 4, "pathology_realism": 3, "image_quality": 5}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return sample_study(tmp_path_factory.mktemp("storage"), n_cases=6, readers=["r1", "r2", "r3"], duplicate_fraction=0.1)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return sample_study(tmp_path_factory.mktemp("pristine"), n_cases=4, readers=["r1", "r2"], duplicate_fraction=0.0)


@pytest.fixture
def fresh(pristine, tmp_path):
    """A copy of an untouched small study (copying is faster than building)."""
    shutil.copytree(pristine.study_dir, tmp_path / "study")
    return dataclasses.replace(pristine, study_dir=tmp_path / "study")


def items_of(storage: Storage, reader_id: int, block: str = "rating") -> list[str]:
    return [
        r[0]
        for r in storage.conn.execute(
            "SELECT a.item_id FROM assignments a JOIN items i USING (item_id) WHERE reader_id = ? AND block = ? ORDER BY position",
            (reader_id, block),
        )
    ]


def test_pragmas_wal_full_foreign_keys(study):
    with Storage(study.study_dir / "study.sqlite") as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_submit_is_atomic_idempotent_and_timed(fresh):
    with Storage(fresh.study_dir / "study.sqlite") as s:
        item = items_of(s, 1)[0]
        assert s.next_position(1) == 1
        s.record_view(1, item, "sess-a")
        time.sleep(0.05)
        first = s.submit(1, item, RATING, comment="  looks odd ", session="sess-a")
        assert first.status == "recorded" and first.seconds >= 0.05
        again = s.submit(1, item, {**RATING, "image_quality": 1}, comment="", session="sess-b")  # double click / second tab
        assert again.status == "duplicate"
        rows = s.conn.execute("SELECT criterion, score FROM responses WHERE reader_id = 1 ORDER BY criterion").fetchall()
        assert [tuple(r) for r in rows] == sorted(RATING.items())
        assert s.conn.execute("SELECT text FROM comments").fetchone()[0] == "looks odd"
        sub = s.conn.execute("SELECT first_shown_at, last_shown_at, submitted_at, seconds, n_views FROM submissions").fetchone()
        assert sub["n_views"] == 1 and sub["seconds"] == pytest.approx(sub["submitted_at"] - sub["last_shown_at"])
        assert s.next_position(1) == 2
        assert s.done(1) == 1 and s.done(2) == 0
        progress = {p.name: p for p in s.progress()}
        assert (progress["r1"].done, progress["r1"].total) == (1, s.total(1))
        assert progress["r1"].median_seconds == pytest.approx(first.seconds) and progress["r2"].median_seconds is None
        actions = [r[0] for r in s.conn.execute("SELECT action FROM audit ORDER BY audit_id")]
        assert actions.count("submit") == 1 and actions.count("add_reader") == 3  # r1, r2, admin


def test_submit_rejects_incomplete_unknown_or_out_of_range_scores(fresh):
    with Storage(fresh.study_dir / "study.sqlite") as s:
        item = items_of(s, 1)[0]
        with pytest.raises(StorageError, match=r"missing \['image_quality'\]"):
            s.submit(1, item, {"anatomy_realism": 4, "pathology_realism": 3})
        with pytest.raises(StorageError, match=r"unknown \['sharpness'\]"):
            s.submit(1, item, {**RATING, "sharpness": 2})
        with pytest.raises(StorageError, match=r"image_quality: score 6 not allowed \(expected one of \[1, 2, 3, 4, 5\]\)"):
            s.submit(1, item, {**RATING, "image_quality": 6})
        with pytest.raises(StorageError, match="not assigned to reader 1"):
            s.submit(1, "0000000000000000", RATING)
        turing = items_of(s, 1, "turing")[0]
        with pytest.raises(StorageError, match="turing_call"):
            s.submit(1, turing, RATING)
        assert s.submit(1, turing, {"turing_call": 1, "turing_confidence": 2}).status == "not_current"  # valid, not yet
        assert s.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0  # nothing partial was written


def test_revise_replaces_scores_and_audits_old_values(fresh):
    with Storage(fresh.study_dir / "study.sqlite") as s:
        item = items_of(s, 2)[0]
        s.submit(2, item, RATING, comment="first")
        result = s.submit(2, item, {**RATING, "image_quality": 2}, comment="second", revise=True)
        assert result.status == "revised"
        assert s.conn.execute("SELECT score FROM responses WHERE criterion = 'image_quality'").fetchone()[0] == 2
        assert s.conn.execute("SELECT revisions FROM submissions").fetchone()[0] == 1
        assert s.conn.execute("SELECT text FROM comments").fetchone()[0] == "second"
        detail = s.conn.execute("SELECT detail FROM audit WHERE action = 'revise'").fetchone()[0]
        assert '"old": {"anatomy_realism": 4, "image_quality": 5' in detail


def test_audit_is_append_only(fresh):
    with Storage(fresh.study_dir / "study.sqlite") as s:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            s.conn.execute("UPDATE audit SET action = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            s.conn.execute("DELETE FROM audit")


def test_unique_constraint_backs_the_logic(fresh):
    with Storage(fresh.study_dir / "study.sqlite") as s:
        item = items_of(s, 1)[0]
        s.submit(1, item, RATING)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            s.conn.execute("INSERT INTO responses VALUES (1, ?, 'image_quality', 3, 0)", (item,))


def test_item_view_shows_no_source_and_progress(study):
    with Storage(study.study_dir / "study.sqlite") as s:
        view = s.item_view(1, 1)
        assert view.position == 1 and view.total == s.total(1)
        assert view.image_path.parent == study.study_dir / "images" and view.image_path.is_file()
        assert [c.name for c in view.criteria] == list(RATING)
        assert {f.name for f in dataclasses.fields(view)} == {
            "item_id", "position", "total", "block", "image_path", "pathology", "boxes", "criteria", "recorded", "comment",
        }  # fmt: skip
        text = repr(view)
        secrets = {r[0] for r in s.conn.execute("SELECT case_id FROM images")} | {"xreal", "cheff", "/run/"}
        assert not [secret for secret in secrets if secret in text]
        with pytest.raises(StorageError, match="no item at position 999"):
            s.item_view(1, 999)


def hammer(db: str, reader_id: int, items: list[str], start: float, queue) -> None:
    """One process: submit every item once, as fast as possible, from a common start time."""
    while time.time() < start:
        pass
    statuses = []
    with Storage(db) as s:
        for item in items:
            statuses.append((reader_id, item, s.submit(reader_id, item, RATING, session=str(os.getpid())).status))
    queue.put(statuses)


def test_concurrent_processes_write_exactly_one_row_per_reader_item_criterion(study):
    db = str(study.study_dir / "study.sqlite")
    with Storage(db) as s:
        r1, r2 = items_of(s, 1), items_of(s, 2)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start = time.time() + 0.5
    jobs = [  # two processes race on r1's items, a third on r1's items reversed, a fourth on r2's
        (1, r1), (1, r1), (1, r1[::-1]), (2, r2),
    ]  # fmt: skip
    procs = [ctx.Process(target=hammer, args=(db, rid, items, start, queue)) for rid, items in jobs]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    flat = [r for rs in results for r in rs]
    recorded = [(rid, item) for rid, item, status in flat if status == "recorded"]
    assert sorted(recorded) == sorted([(1, i) for i in r1] + [(2, i) for i in r2])  # each acknowledged once
    assert sum(status in ("duplicate", "not_current") for *_, status in flat) == 2 * len(r1)  # stored nothing
    with Storage(db) as s:
        counts = s.conn.execute(
            "SELECT reader_id, item_id, criterion, COUNT(*) FROM responses WHERE reader_id IN (1, 2) GROUP BY 1, 2, 3"
        ).fetchall()
        assert len(counts) == (len(r1) + len(r2)) * 3 and {c[3] for c in counts} == {1}
        audits = s.conn.execute("SELECT COUNT(*) FROM audit WHERE action = 'submit' AND reader_id IN (1, 2)").fetchone()[0]
        assert audits == len(r1) + len(r2)


KILL_SCRIPT = """
import sys
from xreal_bench.reader_study.storage import Storage
s = Storage(sys.argv[1])
items = sys.argv[2:]
scores = {"anatomy_realism": 2, "pathology_realism": 2, "image_quality": 2}
while True:  # keep writing (re-submits are duplicates) until killed
    for item in items:
        if s.submit(3, item, scores).status == "recorded":
            print(item, flush=True)
"""


def test_killing_the_writer_loses_nothing_acknowledged(study):
    db = str(study.study_dir / "study.sqlite")
    with Storage(db) as s:
        items = items_of(s, 3)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db, *items], stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        while len(acked) < len(items) // 2:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            acked.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Storage(db) as s:
        stored = {r[0] for r in s.conn.execute("SELECT item_id FROM submissions WHERE reader_id = 3")}
        complete = s.conn.execute(
            "SELECT COUNT(*) FROM (SELECT item_id FROM responses WHERE reader_id = 3 GROUP BY item_id HAVING COUNT(*) = 3)"
        ).fetchone()[0]
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert set(acked) <= stored
    assert complete == len(stored)  # no half-written item
