"""Access to a study: token rotation and revocation, the failed sign-in limit (fake clock, AppTest and
HTTP), the token leaving the address bar (browser), connections closed with script runs, and the
metrics endpoint behind the admin token."""

import http.client
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from study_apptest import app_starter, button, progress
from test_study_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study import add_reader
from xreal_bench.reader_study.access import RETIRED, WITHDRAWN, too_many
from xreal_bench.reader_study.cli import serve_command
from xreal_bench.reader_study.storage import SIGN_IN_WINDOW_S, Storage, StorageError, hash_token

T0 = 1_700_000_000.0


@pytest.fixture
def accounts(tmp_path):
    """A database with two readers and the organiser, and their tokens."""
    storage = Storage.create(tmp_path / "study.sqlite")
    with storage.write() as conn:
        tokens = {
            name: storage.add_account(conn, name, role)[1]
            for name, role in [("r1", "reader"), ("r2", "reader"), ("admin", "admin")]
        }
    yield storage, tokens
    storage.close()


def test_failed_sign_ins_are_limited_per_client_within_the_window(accounts):
    storage, _ = accounts
    for k in range(4):
        storage.record_sign_in_failure("10.0.0.9", now=T0 + 60 * k)
    assert storage.sign_in_wait("10.0.0.9", now=T0 + 240) == 0  # four failures: still allowed
    storage.record_sign_in_failure("10.0.0.9", now=T0 + 300)
    assert storage.sign_in_wait("10.0.0.9", now=T0 + 300) == 300  # until the failure at T0 leaves the window
    assert storage.sign_in_wait("10.0.0.9", now=T0 + 599.5) == 0.5
    assert storage.sign_in_wait("10.0.0.9", now=T0 + 600) == 0  # four left in the window
    assert storage.sign_in_wait("10.0.0.10", now=T0 + 300) == 0  # another client is not affected
    storage.record_sign_in_failure("10.0.0.10", now=T0 + 300 + SIGN_IN_WINDOW_S)
    rows = storage.conn.execute("SELECT client, at FROM sign_in_failures ORDER BY at").fetchall()
    assert [tuple(r) for r in rows] == [("10.0.0.10", T0 + 900)]  # older rows (every client's) pruned
    assert too_many(300) == "too many failed sign-ins from this address; try again in 5 minutes"
    assert too_many(0.5) == "too many failed sign-ins from this address; try again in 1 minute"


def test_rotation_retires_the_old_token_at_once_and_audits_it(accounts):
    storage, tokens = accounts
    rotated = storage.rotate_token("r1")
    assert rotated.name == "r1" and rotated.reactivated_from is None and rotated.token != tokens["r1"]
    assert storage.authenticate(tokens["r1"]) is None
    assert storage.authenticate(rotated.token).name == "r1"
    assert storage.authenticate(tokens["r2"]).name == "r2"  # others unaffected
    assert storage.retired_token(tokens["r1"]) and not storage.retired_token(tokens["r1"] + "x")
    assert not storage.retired_token(rotated.token)
    rows = storage.conn.execute("SELECT reader_id, action, detail FROM audit WHERE action = 'rotate_token'").fetchall()
    assert [(r[0], r[1], json.loads(r[2])) for r in rows] == [
        (1, "rotate_token", {"name": "r1", "reactivated": False, "retired_sha256": hash_token(tokens["r1"])})
    ]


def test_revoke_stops_sign_in_and_links_reactivates(accounts):
    storage, tokens = accounts
    assert storage.revoke("r2", now=T0) is None
    assert storage.revoke("r2", now=T0 + 5) == T0  # already revoked: unchanged
    assert storage.authenticate(tokens["r2"]) is None and storage.retired_token(tokens["r2"])
    assert [(a.name, a.role, a.revoked_at) for a in storage.accounts()] == [
        ("r1", "reader", None),
        ("r2", "reader", T0),
        ("admin", "admin", None),
    ]
    again = storage.rotate_token("r2")
    assert again.reactivated_from == T0 and storage.authenticate(again.token).name == "r2"
    assert storage.authenticate(tokens["r2"]) is None  # the revoked token stays dead
    actions = [r[0] for r in storage.conn.execute("SELECT action FROM audit WHERE reader_id = 2 ORDER BY audit_id")]
    assert actions == ["add_reader", "revoke", "rotate_token"]
    with pytest.raises(StorageError, match=r"no account named 'dr_x' in this study \(accounts: r1, r2, admin\)"):
        storage.rotate_token("dr_x")
    with pytest.raises(StorageError, match="no account named 'dr_x'"):
        storage.revoke("dr_x")


def test_revoking_keeps_the_ratings(tmp_path):
    created = sample_study(tmp_path, n_cases=2, readers=["r1"], duplicate_fraction=0.0, calibration_items=0, turing_test=False)
    with Storage(created.study_dir / "study.sqlite") as s:
        view = s.item_view(1, 1)
        s.submit(1, view.item_id, {c.name: 3 for c in view.criteria})
        s.revoke("r1")
        assert s.authenticate(created.readers[0].token) is None
        assert s.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == len(view.criteria)
        assert [r["reader"] for r in s.unblinded_rows()] == ["r1"] * len(view.criteria)


# -- the app (AppTest: real script runs, no browser) -------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return sample_study(tmp_path_factory.mktemp("access"), n_cases=2, readers=["r1"], duplicate_fraction=0.0, calibration_items=1)


@pytest.fixture
def app(study, monkeypatch):
    return app_starter(study.study_dir, monkeypatch)


FIRST = "Calibration 1 / 1 · then "  # the progress line on a new reader's first item (the study below)


def at_first_item(at: AppTest) -> bool:
    return progress(at).startswith(FIRST)


def failures(study) -> list[str]:
    con = sqlite3.connect(study.study_dir / "study.sqlite")
    rows = [r[0] for r in con.execute("SELECT client FROM sign_in_failures")]
    con.close()
    return rows


def test_link_token_leaves_the_address_and_the_session_stays_signed_in(app, study):
    reader = add_reader(study.study_dir, "linked")
    at = app(reader.token)
    assert "token" not in at.query_params
    assert at_first_item(at)
    at.run()  # later runs sign in from the session, not the address
    assert at_first_item(at) and not at.error


def test_sixth_attempt_is_refused_without_checking_the_token(app, study):
    reader = add_reader(study.study_dir, "limited")
    before = len(failures(study))
    at = app()
    for k in range(5):
        at.text_input[0].input(f"guess-{k}")
        at.button[0].click().run()
        assert at.error[-1].value == "That token is not valid."
    assert len(failures(study)) == before + 5 and failures(study)[-1].startswith("session ")
    for attempt in ("guess-5", reader.token):  # neither a wrong nor the right token is looked at
        at.text_input[0].input(attempt)
        at.button[0].click().run()
        assert at.error[-1].value == "too many failed sign-ins from this address; try again in 10 minutes"
        assert [t.value for t in at.title] == ["Sign in"]
    assert len(failures(study)) == before + 5
    assert at_first_item(app(reader.token))  # another client signs in


def test_rotation_and_revocation_sign_out_open_sessions_at_once(app, study):
    reader = add_reader(study.study_dir, "rotated")
    at = app(reader.token)
    assert at_first_item(at)
    with Storage(study.study_dir / "study.sqlite") as s:
        new = s.rotate_token("rotated").token
    at.run()
    assert [t.value for t in at.title] == ["Sign in"] and at.error[0].value == WITHDRAWN
    before = len(failures(study))
    old_link = app(reader.token)
    assert old_link.error[0].value == RETIRED and len(failures(study)) == before  # a retired token is no guess
    fresh = app(new)
    assert at_first_item(fresh)
    with Storage(study.study_dir / "study.sqlite") as s:
        s.revoke("rotated")
    fresh.run()
    assert fresh.error[0].value == WITHDRAWN and not fresh.get("progress")


def open_files(db: Path) -> int:
    """This process's open descriptors on the study database (and its -wal/-shm files)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(db))
        except OSError:
            pass
    return count


def test_a_tab_opened_before_its_link_was_replaced_stores_nothing(app, study):
    reader = add_reader(study.study_dir, "stale_tab")
    at = app(reader.token)
    for key in ("digit_4", "digit_3", "digit_5"):
        button(at, key).click().run()
    submit = button(at, "submit")
    with Storage(study.study_dir / "study.sqlite") as s:
        s.rotate_token("stale_tab")
    submit.click().run()  # the submit callback runs before the page signs the session out
    assert [t.value for t in at.title] == ["Sign in"] and at.error[0].value == WITHDRAWN
    con = sqlite3.connect(study.study_dir / "study.sqlite")
    (stored,) = con.execute("SELECT COUNT(*) FROM submissions JOIN readers USING (reader_id) WHERE name = 'stale_tab'").fetchone()
    con.close()
    assert stored == 0


def test_connections_are_closed_with_their_script_runs(app, study):
    db = study.study_dir / "study.sqlite"
    with Storage(db) as probe:
        probe.meta("schema_version")
        assert open_files(db) >= 1  # the probe sees an open connection
    before = open_files(db)
    reader = add_reader(study.study_dir, "thirty")
    sessions = []
    for k in range(30):  # 30 browser sessions the server keeps, each signed in and shown an item
        at = app(reader.token)
        if k < 3:  # a submit runs in a callback at the start of the next run (the connection reopens)
            for key in ("digit_4", "digit_3", "digit_5", "submit"):
                button(at, key).click().run()
        sessions.append(at)
        assert open_files(db) == before
    con = sqlite3.connect(db)
    views, done = con.execute(
        "SELECT (SELECT COUNT(*) FROM views JOIN readers USING (reader_id) WHERE name = 'thirty'), "
        "(SELECT COUNT(*) FROM submissions JOIN readers USING (reader_id) WHERE name = 'thirty')"
    ).fetchone()
    con.close()
    assert done == 3 and views >= 30  # the sessions really used the database
    assert progress(sessions[-1]).startswith("Realism ratings 3 / 6 · then ")  # calibration and 2 ratings done


# -- the served study (HTTP; browser) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    created = sample_study(root, n_cases=2, readers=["r1"], image_size=128, calibration_items=0, turing_test=False)
    port = free_port()
    command, env = serve_command(created.study_dir, port, "127.0.0.1")
    log = root / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        admin = Storage(created.study_dir / "study.sqlite").rotate_token("admin").token
        yield created, port, proc, admin
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    con.request("GET", path, headers=headers or {})
    response = con.getresponse()
    body = response.read().decode(errors="replace")
    con.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def server_files(pid: int, db: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(db.resolve()))
        except OSError:
            pass
    return count


def test_link_token_moves_into_an_httponly_cookie(served):
    created, port, proc, _ = served
    token = created.readers[0].token
    status, headers, _ = get(port, f"/?embed=true&token={token}")
    assert status == 303 and headers["location"] == "/?embed=true"
    assert headers["set-cookie"] == f"xreal_study_token={token}; Path=/; HttpOnly; SameSite=Strict"
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"
    for hostile in ("//evil.example/", "/\\evil.example/", "///evil.example/"):  # no open redirect to another site
        status, headers, _ = get(port, f"{hostile}?token={token}")
        assert status == 303 and headers["location"] == "/evil.example/", hostile
    status, headers, _ = get(port, "/?token=not%20a%20token")  # not a token's shape: left to the app
    assert status == 200 and "set-cookie" not in headers


def test_metrics_answer_only_the_admin_token(served):
    created, port, proc, admin = served
    db = created.study_dir / "study.sqlite"
    status, headers, body = get(port, "/_stcore/metrics")
    assert (status, headers["www-authenticate"]) == (401, "Bearer") and "needs the study's admin token" in body
    assert "session" not in body
    status, _, body = get(port, "/_stcore/metrics", {"Authorization": f"Bearer {created.readers[0].token}"})
    assert status == 401 and body == "not the study's admin token\n"
    status, _, body = get(port, "/_stcore/metrics", {"Authorization": f"Bearer {admin}"})
    assert status == 200 and "session_events_total" in body
    try:
        for k in range(5):
            assert get(port, "/_stcore/metrics/", {"Authorization": f"Bearer guess{k}"})[0] == 401
        status, _, body = get(port, "/_stcore/metrics", {"Authorization": f"Bearer {admin}"})
        assert status == 429 and body == "too many failed sign-ins from this address; try again in 10 minutes\n"
        con = sqlite3.connect(db)
        assert [r[0] for r in con.execute("SELECT client FROM sign_in_failures")] == ["127.0.0.1"] * 5
    finally:
        con = sqlite3.connect(db)
        con.execute("DELETE FROM sign_in_failures")
        con.commit()
        con.close()
    assert server_files(proc.pid, db) == 0  # every request closed its connection


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_link_sign_in_leaves_no_token_in_the_address(served):
    from playwright.sync_api import sync_playwright

    created, port, proc, _ = served
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{url}/?token={created.readers[0].token}")
            page.locator('[data-testid="stProgress"]', has_text="Realism ratings 1 / ").wait_for()
            page.frame_locator(".st-key-viewer iframe").locator("canvas#view").wait_for()
            assert page.url == f"{url}/"
            assert page.evaluate("history.length") == 2  # about:blank and the address without the token
            page.reload()  # the cookie signs the new session in
            page.locator('[data-testid="stProgress"]', has_text="Realism ratings 1 / ").wait_for()
            page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
            assert server_files(proc.pid, created.study_dir / "study.sqlite") == 0  # idle sessions hold no connection
            assert "xreal_study_token" not in page.evaluate("document.cookie")  # HttpOnly: hidden from scripts
            page.go_back()  # behind the Back button: the blank page, not the link
            assert page.url == "about:blank"
        finally:
            browser.close()
