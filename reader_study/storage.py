"""SQLite storage of a reader study: the key, the assignments, the responses, the audit trail.

The database is the single source of truth (Streamlit's session state is per tab and lost on a
reload). Durability and concurrency rules:

- WAL journal with ``synchronous=FULL``: a submit that returned is on disk, so killing the
  server (or the machine) loses nothing that was acknowledged;
- one connection per :class:`Storage` object, opened lazily; the app keeps one object per
  browser session (a session's script runs are serial), never shares one between sessions,
  and closes its connection at the end of every script run (:mod:`~xreal_bench.reader_study.access`);
- every write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
  writers never deadlock on a lock upgrade) with a ``busy_timeout`` to wait for the lock;
- ``UNIQUE(reader_id, item_id, criterion)`` on responses and the submissions primary key make a
  double click or two tabs idempotent: the second submit of an item is reported as a duplicate
  and writes nothing;
- a first submit is stored only for the reader's current item (the first unanswered one), so a
  rating made on a page that another tab has moved past can never land on another image;
- the ``audit`` table is append-only (triggers refuse UPDATE and DELETE);
- all timestamps are the server's clock (Unix seconds).

The key (item -> image -> source, case) lives here only. :meth:`Storage.item_view` returns
what a reader may see; no method used by the reader-facing app returns a source or a case id,
except :meth:`Storage.calibration_truth` (real or generated, for an answered calibration item).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from xreal_bench.reader_study.criteria import Criterion
from xreal_bench.reader_study.layout import IMAGES

SCHEMA_VERSION = 2
Role = Literal["reader", "admin"]
#: Failed sign-ins one client may make within :data:`SIGN_IN_WINDOW_S` seconds before it is refused.
SIGN_IN_LIMIT = 5
SIGN_IN_WINDOW_S = 600.0
Block = Literal["calibration", "rating", "turing"]

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('study', 'calibration', 'turing')),  -- turing: held-out real-or-generated case
    stratum TEXT NOT NULL,
    positives TEXT NOT NULL,          -- JSON list of pathology names
    boxes TEXT NOT NULL,              -- JSON list of {label, x0, y0, x1, y1} (image fractions)
    view TEXT NOT NULL
);
CREATE TABLE images (
    image_id TEXT PRIMARY KEY,        -- opaque random id; the file is images/<image_id>.png
    source TEXT NOT NULL,             -- 'real' or a generator name
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    sample_index INTEGER NOT NULL,
    origin TEXT NOT NULL,             -- path of the run image it was re-encoded from
    sha256 TEXT NOT NULL,             -- of the study file
    UNIQUE (source, case_id, sample_index)
);
CREATE TABLE criteria (
    block TEXT NOT NULL CHECK (block IN ('rating', 'turing')),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,         -- JSON of reader_study.criteria.Criterion
    PRIMARY KEY (block, name)
);
CREATE TABLE items (
    item_id TEXT PRIMARY KEY,         -- opaque random id
    image_id TEXT NOT NULL REFERENCES images (image_id),
    block TEXT NOT NULL CHECK (block IN ('calibration', 'rating', 'turing')),
    duplicate_of TEXT REFERENCES items (item_id)
);
CREATE TABLE readers (
    reader_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reader', 'admin')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL                   -- set by `study revoke`: the token signs in no more
);
CREATE TABLE reader_design (
    reader_id INTEGER PRIMARY KEY REFERENCES readers (reader_id),
    seed TEXT NOT NULL,               -- the reader's own random seed (drawn from the OS at creation)
    design TEXT NOT NULL              -- JSON: source -> Latin-square symbol, case order, ...
);
CREATE TABLE sign_in_failures (
    client TEXT NOT NULL,             -- the address a failed sign-in came from
    at REAL NOT NULL
);
CREATE INDEX sign_in_failures_client ON sign_in_failures (client, at);
CREATE TABLE assignments (
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id),
    position INTEGER NOT NULL,        -- 1-based order in which the reader sees the items
    item_id TEXT NOT NULL REFERENCES items (item_id),
    PRIMARY KEY (reader_id, position),
    UNIQUE (reader_id, item_id)
);
CREATE TABLE views (
    view_id INTEGER PRIMARY KEY,
    reader_id INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    session TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX views_reader_item ON views (reader_id, item_id);
CREATE TABLE submissions (
    reader_id INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    first_shown_at REAL,
    last_shown_at REAL,
    seconds REAL,                     -- submitted_at - last_shown_at (time on the item this visit)
    n_views INTEGER NOT NULL,
    session TEXT NOT NULL,
    revisions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reader_id, item_id),
    FOREIGN KEY (reader_id, item_id) REFERENCES assignments (reader_id, item_id)
);
CREATE TABLE responses (
    reader_id INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    criterion TEXT NOT NULL,
    score INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (reader_id, item_id, criterion),
    FOREIGN KEY (reader_id, item_id) REFERENCES submissions (reader_id, item_id)
);
CREATE TABLE comments (
    reader_id INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (reader_id, item_id)
);
CREATE TABLE audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    reader_id INTEGER,
    action TEXT NOT NULL,
    item_id TEXT,
    session TEXT,
    detail TEXT NOT NULL              -- JSON
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""

#: Statements that bring a database of the previous schema version to this one.
MIGRATIONS = {
    2: [
        "ALTER TABLE readers ADD COLUMN revoked_at REAL",
        "CREATE TABLE reader_design (reader_id INTEGER PRIMARY KEY REFERENCES readers (reader_id), "
        "seed TEXT NOT NULL, design TEXT NOT NULL)",
        "CREATE TABLE sign_in_failures (client TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX sign_in_failures_client ON sign_in_failures (client, at)",
    ]
}


class StorageError(RuntimeError):
    """A request the study cannot accept (unknown item, incomplete scores, ...)."""


@dataclass(frozen=True)
class Account:
    reader_id: int
    name: str
    role: Role


@dataclass(frozen=True)
class AccountStatus:
    name: str
    role: Role
    created_at: float
    revoked_at: float | None  # None: the token signs in


@dataclass(frozen=True)
class RotatedToken:
    name: str
    token: str  # shown once; stored hashed
    reactivated_from: float | None  # when the account had been revoked (None: it was active)


@dataclass(frozen=True)
class ItemView:
    """Everything the app may show about one item: no source, no case id, no origin path."""

    item_id: str
    position: int  # 1-based
    total: int
    block: Block
    image_path: Path
    pathology: str
    boxes: tuple[dict, ...]
    criteria: tuple[Criterion, ...]
    recorded: dict[str, int] = field(default_factory=dict)  # scores already submitted (revisits)
    comment: str = ""


#: What :meth:`Storage.submit` did. Only ``recorded`` and ``revised`` stored anything:
#: ``duplicate`` = the item was already answered (a double click, or a second tab that still showed it);
#: ``not_current`` = the item is not the reader's current one (a press made on a page that moved on).
SubmitStatus = Literal["recorded", "revised", "duplicate", "not_current"]
NOT_STORED: frozenset[str] = frozenset({"duplicate", "not_current"})


@dataclass(frozen=True)
class SubmitResult:
    status: SubmitStatus
    seconds: float | None

    @property
    def stored(self) -> bool:
        return self.status not in NOT_STORED


@dataclass(frozen=True)
class BlockProgress:
    """One block of a reader's list (blocks are contiguous: calibration, ratings, real-or-generated)."""

    block: Block
    first_position: int
    total: int
    done: int


@dataclass(frozen=True)
class ReaderProgress:
    name: str
    role: Role
    done: int
    total: int
    last_activity: float | None
    median_seconds: float | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token() -> str:
    """A random URL-safe token (144 bits)."""
    return secrets.token_urlsafe(18)


class Storage:
    """One connection to a study database (see the module docstring for the rules)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._criteria: dict[str, tuple[Criterion, ...]] | None = None

    # -- connection -------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.is_file():
                raise StorageError(f"study database not found: {self.path} (create a study with `xreal-bench study create`)")
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; every write opens BEGIN IMMEDIATE itself.
        # check_same_thread=False: Streamlit runs one session's reruns serially but on new threads.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"{self.path}: cannot enable WAL journal (got {mode!r}); is the folder on a network filesystem?")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._migrate(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring a database of an earlier schema up to :data:`SCHEMA_VERSION` (one transaction)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: study database schema {version} is newer than this xreal-bench's ({SCHEMA_VERSION}); upgrade it"
            )
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:  # read again under the write lock: another connection may have migrated meanwhile
            version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            if version < 2:
                for statement in MIGRATIONS[2]:
                    conn.execute(statement)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @classmethod
    def create(cls, path: str | Path) -> Storage:
        """Create a new, empty study database at ``path`` (which must not exist)."""
        path = Path(path)
        if path.exists():
            raise StorageError(f"{path} already exists; refusing to overwrite a study database")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.close()
        return cls(path)

    # -- building (used by the builder) -----------------------------------------------------
    def add_account(self, conn: sqlite3.Connection, name: str, role: Role = "reader") -> tuple[int, str]:
        """Insert a reader (inside the caller's transaction); return its id and one-time token."""
        if conn.execute("SELECT 1 FROM readers WHERE name = ?", (name,)).fetchone():
            raise StorageError(f"a reader named {name!r} already exists in this study")
        token = new_token()
        cur = conn.execute(
            "INSERT INTO readers (name, role, token_sha256, created_at) VALUES (?, ?, ?, ?)",
            (name, role, hash_token(token), time.time()),
        )
        reader_id = cur.lastrowid
        if reader_id is None:
            raise StorageError(f"could not add reader {name!r}")
        audit(conn, "add_reader", reader_id=reader_id, item_id=None, session=None, detail={"name": name, "role": role})
        return reader_id, token

    # -- reading ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def required_meta(self, key: str) -> str:
        """A study setting every built study has; a :class:`StorageError` names a damaged database."""
        value = self.meta(key)
        if value is None:
            raise StorageError(f"the study database has no {key!r} setting: it is damaged or not built by `study create`")
        return value

    def criteria(self, block: Block) -> tuple[Criterion, ...]:
        """The criteria asked for items of ``block`` (calibration items use the rating criteria)."""
        if self._criteria is None:
            loaded: dict[str, list[Criterion]] = {"rating": [], "turing": []}
            for row in self.conn.execute("SELECT block, definition FROM criteria ORDER BY block, position"):
                loaded[row["block"]].append(Criterion.from_dict(json.loads(row["definition"])))
            self._criteria = {k: tuple(v) for k, v in loaded.items()}
        return self._criteria["turing" if block == "turing" else "rating"]

    def authenticate(self, token: str | None) -> Account | None:
        """The active (not revoked) account whose token hashes to the stored hash, compared in constant time."""
        if not token or not token.strip():
            return None
        digest = hash_token(token)
        found = None
        for row in self.conn.execute("SELECT reader_id, name, role, token_sha256, revoked_at FROM readers"):
            if hmac.compare_digest(digest, row["token_sha256"]) and row["revoked_at"] is None:  # every row compared
                found = Account(int(row["reader_id"]), row["name"], row["role"])
        return found

    def retired_token(self, token: str) -> bool:
        """Whether ``token`` once signed in (revoked, or replaced by `study links`): not a guess."""
        digest = hash_token(token)
        if self.conn.execute("SELECT 1 FROM readers WHERE token_sha256 = ? AND revoked_at IS NOT NULL", (digest,)).fetchone():
            return True
        query = "SELECT 1 FROM audit WHERE action = 'rotate_token' AND json_extract(detail, '$.retired_sha256') = ?"
        return self.conn.execute(query, (digest,)).fetchone() is not None

    # -- accounts (`study links`, `study revoke`) -------------------------------------------
    def accounts(self) -> list[AccountStatus]:
        """Every account in creation order, with when it was revoked (None: active)."""
        rows = self.conn.execute("SELECT name, role, created_at, revoked_at FROM readers ORDER BY reader_id")
        return [AccountStatus(r["name"], r["role"], r["created_at"], r["revoked_at"]) for r in rows]

    def _account_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT reader_id, revoked_at FROM readers WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(r[0] for r in conn.execute("SELECT name FROM readers ORDER BY reader_id"))
            raise StorageError(f"no account named {name!r} in this study (accounts: {known})")
        return row

    def rotate_token(self, name: str) -> RotatedToken:
        """Give ``name`` a new token (the old one stops signing in at once) and re-activate a revoked account."""
        token = new_token()
        with self.write() as conn:
            row = self._account_row(conn, name)
            retired = conn.execute("SELECT token_sha256 FROM readers WHERE reader_id = ?", (row["reader_id"],)).fetchone()[0]
            conn.execute(
                "UPDATE readers SET token_sha256 = ?, revoked_at = NULL WHERE reader_id = ?",
                (hash_token(token), row["reader_id"]),
            )
            detail = {"name": name, "retired_sha256": retired, "reactivated": row["revoked_at"] is not None}
            audit(conn, "rotate_token", reader_id=row["reader_id"], item_id=None, session=None, detail=detail)
        return RotatedToken(name, token, reactivated_from=row["revoked_at"])

    def revoke(self, name: str, *, now: float | None = None) -> float | None:
        """Stop ``name``'s token from signing in (ratings are kept); the time it was revoked before, if it was."""
        with self.write() as conn:
            row = self._account_row(conn, name)
            if row["revoked_at"] is not None:
                return float(row["revoked_at"])
            at = time.time() if now is None else now
            conn.execute("UPDATE readers SET revoked_at = ? WHERE reader_id = ?", (at, row["reader_id"]))
            audit(conn, "revoke", reader_id=row["reader_id"], item_id=None, session=None, detail={"name": name})
        return None

    # -- failed sign-ins --------------------------------------------------------------------
    def sign_in_wait(self, client: str, *, now: float) -> float:
        """Seconds until ``client`` may try a token again: 0 unless it failed :data:`SIGN_IN_LIMIT` times
        in the last :data:`SIGN_IN_WINDOW_S` seconds (then until the oldest of those leaves the window)."""
        times = [
            row[0]
            for row in self.conn.execute(
                "SELECT at FROM sign_in_failures WHERE client = ? AND at > ? ORDER BY at DESC LIMIT ?",
                (client, now - SIGN_IN_WINDOW_S, SIGN_IN_LIMIT),
            )
        ]
        if len(times) < SIGN_IN_LIMIT:
            return 0.0
        return max(0.0, times[-1] + SIGN_IN_WINDOW_S - now)

    def record_sign_in_failure(self, client: str, *, now: float) -> None:
        """Log a failed sign-in from ``client`` and forget failures older than the window (of every client)."""
        with self.write() as conn:
            conn.execute("DELETE FROM sign_in_failures WHERE at <= ?", (now - SIGN_IN_WINDOW_S,))
            conn.execute("INSERT INTO sign_in_failures (client, at) VALUES (?, ?)", (client, now))

    def total(self, reader_id: int) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM assignments WHERE reader_id = ?", (reader_id,)).fetchone()[0]

    def done(self, reader_id: int) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM submissions WHERE reader_id = ?", (reader_id,)).fetchone()[0]

    def next_position(self, reader_id: int) -> int | None:
        """The first assigned position without a submission (resume point); None when finished."""
        row = self.conn.execute(
            """SELECT MIN(a.position) FROM assignments a
               LEFT JOIN submissions s ON s.reader_id = a.reader_id AND s.item_id = a.item_id
               WHERE a.reader_id = ? AND s.item_id IS NULL""",
            (reader_id,),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def item_view(self, reader_id: int, position: int) -> ItemView:
        """What the reader sees at ``position``: image file, pathology label, criteria."""
        row = self.conn.execute(
            """SELECT a.item_id, i.block, i.image_id, c.positives, c.boxes
               FROM assignments a JOIN items i ON i.item_id = a.item_id
               JOIN images m ON m.image_id = i.image_id JOIN cases c ON c.case_id = m.case_id
               WHERE a.reader_id = ? AND a.position = ?""",
            (reader_id, position),
        ).fetchone()
        if row is None:
            raise StorageError(f"reader {reader_id} has no item at position {position}")
        item_id = row["item_id"]
        recorded = {
            r["criterion"]: int(r["score"])
            for r in self.conn.execute(
                "SELECT criterion, score FROM responses WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)
            )
        }
        comment = self.conn.execute(
            "SELECT text FROM comments WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)
        ).fetchone()
        positives = json.loads(row["positives"])
        return ItemView(
            item_id=item_id,
            position=position,
            total=self.total(reader_id),
            block=row["block"],
            image_path=self.path.parent / IMAGES / f"{row['image_id']}.png",
            pathology=", ".join(positives) if positives else "No Finding",
            boxes=tuple(json.loads(row["boxes"])),
            criteria=self.criteria(row["block"]),
            recorded=recorded,
            comment="" if comment is None else comment["text"],
        )

    def block_progress(self, reader_id: int) -> list[BlockProgress]:
        """The reader's blocks in the order they come, each with its items assigned and answered."""
        rows = self.conn.execute(
            """SELECT i.block, MIN(a.position) AS first_position, COUNT(*) AS total, COUNT(s.item_id) AS done
               FROM assignments a JOIN items i ON i.item_id = a.item_id
               LEFT JOIN submissions s ON s.reader_id = a.reader_id AND s.item_id = a.item_id
               WHERE a.reader_id = ? GROUP BY i.block ORDER BY first_position""",
            (reader_id,),
        )
        return [BlockProgress(r["block"], int(r["first_position"]), int(r["total"]), int(r["done"])) for r in rows]

    def instructions_seen(self, reader_id: int, block: Block) -> bool:
        """Whether the reader has confirmed the instruction page of ``block`` (an audit row)."""
        row = self.conn.execute(
            "SELECT 1 FROM audit WHERE reader_id = ? AND action = 'instructions' AND detail = ?",
            (reader_id, json.dumps({"block": block})),
        ).fetchone()
        return row is not None

    def calibration_truth(self, reader_id: int, item_id: str) -> Literal["real", "generated"] | None:
        """The reference answer of a calibration item, once the reader's submit of it is stored.

        The one reader-facing method that looks at a source, and only this far: whether the image
        is real. ``None`` for any other block, or before the item was answered.
        """
        row = self.conn.execute(
            """SELECT m.source FROM submissions s JOIN items i ON i.item_id = s.item_id
               JOIN images m ON m.image_id = i.image_id
               WHERE s.reader_id = ? AND s.item_id = ? AND i.block = 'calibration'""",
            (reader_id, item_id),
        ).fetchone()
        if row is None:
            return None
        return "real" if row["source"] == "real" else "generated"

    # -- writing ----------------------------------------------------------------------------
    def record_instructions(self, reader_id: int, block: Block, session: str) -> None:
        """Log that the reader read the instruction page of ``block`` and started it."""
        with self.write() as conn:
            audit(conn, "instructions", reader_id=reader_id, item_id=None, session=session, detail={"block": block})

    def record_view(self, reader_id: int, item_id: str, session: str) -> None:
        """Log that the server showed ``item_id`` to the reader (server time)."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO views (reader_id, item_id, session, at) VALUES (?, ?, ?, ?)",
                (reader_id, item_id, session, time.time()),
            )

    def submit(
        self,
        reader_id: int,
        item_id: str,
        scores: dict[str, int],
        *,
        comment: str = "",
        session: str = "",
        revise: bool = False,
    ) -> SubmitResult:
        """Record all scores of one item atomically, if it is the reader's current item.

        A first submit is stored only for the reader's first unanswered item (:meth:`next_position`);
        for any other unanswered item nothing is stored and the status is ``"not_current"``. A second
        submit of an answered item is a no-op reported as ``"duplicate"`` unless ``revise``
        (back-navigation allowed), which replaces the scores and logs the old ones.
        """
        with self.write() as conn:
            row = conn.execute(
                """SELECT i.block, a.position FROM assignments a JOIN items i ON i.item_id = a.item_id
                   WHERE a.reader_id = ? AND a.item_id = ?""",
                (reader_id, item_id),
            ).fetchone()
            if row is None:
                raise StorageError(f"item {item_id} is not assigned to reader {reader_id}")
            check_scores(self.criteria(row["block"]), scores)
            now = time.time()
            previous = conn.execute(
                "SELECT revisions FROM submissions WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)
            ).fetchone()
            if previous is not None and not revise:
                return SubmitResult("duplicate", None)
            if previous is None and row["position"] != self.next_position(reader_id):  # read inside this transaction
                audit(conn, "refused", reader_id=reader_id, item_id=item_id, session=session, detail={"scores": scores})
                return SubmitResult("not_current", None)
            first, last, n_views = conn.execute(
                "SELECT MIN(at), MAX(at), COUNT(*) FROM views WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)
            ).fetchone()
            seconds = None if last is None else max(0.0, now - last)
            comment = comment.strip()
            if previous is None:
                conn.execute(
                    """INSERT INTO submissions (reader_id, item_id, submitted_at, first_shown_at, last_shown_at,
                       seconds, n_views, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (reader_id, item_id, now, first, last, seconds, n_views, session),
                )
                conn.executemany(
                    "INSERT INTO responses (reader_id, item_id, criterion, score, recorded_at) VALUES (?, ?, ?, ?, ?)",
                    [(reader_id, item_id, name, int(score), now) for name, score in scores.items()],
                )
                if comment:
                    conn.execute("INSERT INTO comments VALUES (?, ?, ?)", (reader_id, item_id, comment))
                detail = {"scores": scores, "comment": comment, "seconds": seconds}
                audit(conn, "submit", reader_id=reader_id, item_id=item_id, session=session, detail=detail)
                return SubmitResult("recorded", seconds)
            old = {
                r["criterion"]: r["score"]
                for r in conn.execute(
                    "SELECT criterion, score FROM responses WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)
                )
            }
            conn.executemany(
                "UPDATE responses SET score = ?, recorded_at = ? WHERE reader_id = ? AND item_id = ? AND criterion = ?",
                [(int(score), now, reader_id, item_id, name) for name, score in scores.items()],
            )
            conn.execute(
                "UPDATE submissions SET revisions = revisions + 1 WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)
            )
            conn.execute(
                "INSERT INTO comments VALUES (?, ?, ?) ON CONFLICT (reader_id, item_id) DO UPDATE SET text = excluded.text",
                (reader_id, item_id, comment),
            )
            detail = {"old": old, "new": scores, "comment": comment}
            audit(conn, "revise", reader_id=reader_id, item_id=item_id, session=session, detail=detail)
            return SubmitResult("revised", None)

    # -- monitoring and export --------------------------------------------------------------
    def progress(self) -> list[ReaderProgress]:
        """Per account: items done / assigned, last submit time, median seconds per item."""
        result = []
        for r in self.conn.execute("SELECT reader_id, name, role FROM readers ORDER BY reader_id"):
            secs = [
                row[0]
                for row in self.conn.execute(
                    "SELECT seconds FROM submissions WHERE reader_id = ? AND seconds IS NOT NULL", (r["reader_id"],)
                )
            ]
            last = self.conn.execute(
                "SELECT MAX(submitted_at) FROM submissions WHERE reader_id = ?", (r["reader_id"],)
            ).fetchone()[0]
            median = statistics.median(secs) if secs else None
            result.append(
                ReaderProgress(r["name"], r["role"], self.done(r["reader_id"]), self.total(r["reader_id"]), last, median)
            )
        return result

    def blinded_rows(self) -> list[dict]:
        """Responses without the key (for the admin page's download): no source, no case."""
        query = """
            SELECT r.name AS reader, a.position, s.item_id AS item, i.block, p.criterion, p.score,
                   s.submitted_at, s.seconds, s.revisions, COALESCE(c.text, '') AS comment
            FROM submissions s
            JOIN readers r ON r.reader_id = s.reader_id
            JOIN assignments a ON a.reader_id = s.reader_id AND a.item_id = s.item_id
            JOIN items i ON i.item_id = s.item_id
            JOIN responses p ON p.reader_id = s.reader_id AND p.item_id = s.item_id
            LEFT JOIN comments c ON c.reader_id = s.reader_id AND c.item_id = s.item_id
            ORDER BY r.reader_id, a.position, p.criterion"""
        return [dict(row) for row in self.conn.execute(query)]

    def unblinded_rows(self) -> list[dict]:
        """Every response joined with the key (for analysis only; never for the browser)."""
        query = """
            SELECT r.name AS reader, s.item_id AS item, m.case_id AS "case", m.source, k.stratum,
                   k.positives, p.criterion, p.score, a.position AS order_index, i.block,
                   i.duplicate_of, s.first_shown_at, s.last_shown_at, s.submitted_at, s.seconds,
                   s.n_views, s.revisions, COALESCE(c.text, '') AS comment
            FROM submissions s
            JOIN readers r ON r.reader_id = s.reader_id
            JOIN assignments a ON a.reader_id = s.reader_id AND a.item_id = s.item_id
            JOIN items i ON i.item_id = s.item_id
            JOIN images m ON m.image_id = i.image_id
            JOIN cases k ON k.case_id = m.case_id
            JOIN responses p ON p.reader_id = s.reader_id AND p.item_id = s.item_id
            LEFT JOIN comments c ON c.reader_id = s.reader_id AND c.item_id = s.item_id
            ORDER BY r.reader_id, a.position, p.criterion"""
        return [dict(row) for row in self.conn.execute(query)]


def check_scores(criteria: Sequence[Criterion], scores: dict[str, int]) -> None:
    """Every criterion rated exactly once with an allowed value, nothing else."""
    names = [c.name for c in criteria]
    missing = [n for n in names if n not in scores]
    unknown = [n for n in scores if n not in names]
    if missing or unknown:
        raise StorageError(f"scores must rate exactly {names}; missing {missing}, unknown {unknown}")
    for c in criteria:
        value = scores[c.name]
        if isinstance(value, bool) or not isinstance(value, int) or value not in c.values:
            raise StorageError(f"{c.name}: score {value!r} not allowed (expected one of {list(c.values)})")


def audit(conn: sqlite3.Connection, action: str, *, reader_id, item_id, session, detail: dict) -> None:
    conn.execute(
        "INSERT INTO audit (at, reader_id, action, item_id, session, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (time.time(), reader_id, action, item_id, session, json.dumps(detail, sort_keys=True)),
    )
