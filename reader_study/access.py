"""Sign-in and the database connection of a browser session (the app's side of access control).

A token reaches the app in one of three ways, and is checked on every script run (a token that
``study links`` replaced or ``study revoke`` withdrew stops working in an open tab at once):

- the reader's link, ``/?token=...``: the launcher (:mod:`~xreal_bench.reader_study.server`)
  moves it into an HttpOnly cookie and redirects to the same address without it before the page
  loads, so the token is in neither the address bar nor the tab's history, and a reload stays
  signed in. Served without the launcher (``AppTest``, a bare ``streamlit run app.py``) the app
  reads ``?token=`` itself and removes it from the address bar (the page's history keeps it);
- that cookie (:data:`TOKEN_COOKIE`), read from the browser session's first request;
- the sign-in form: signs in this browser session only (a reload asks again; the link does not).

Failed sign-ins are counted per client (:func:`client_id`) in the database: after
:data:`~xreal_bench.reader_study.storage.SIGN_IN_LIMIT` failures within
:data:`~xreal_bench.reader_study.storage.SIGN_IN_WINDOW_S` seconds, the client is refused without
its token being checked. A token that once signed in (revoked, or replaced) is not a guess and is
not counted.

Connections: the session keeps one :class:`Storage` object, whose connection :func:`run_storage`
closes when the script run ends; widget callbacks (run at the start of the next run) reopen it
lazily and that run closes it again, so open connections are bounded by the script runs in
progress, not by the browser sessions the server still remembers.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from xreal_bench.reader_study.storage import Account, Storage

TOKEN_COOKIE = "xreal_study_token"
SESSION_TOKEN = "signed_in_token"  # session-state key of the token this browser session signed in with
INVALID_LINK = "The token in this link is not valid. Check the link, or ask the study organiser for a new one."
INVALID_COOKIE = "Your saved sign-in is not valid. Open your link again, or ask the study organiser for a new one."
INVALID_TYPED = "That token is not valid."
RETIRED = "This link was replaced or revoked. Ask the study organiser for your current link."
WITHDRAWN = "Your access was revoked or your link was re-issued. Open your current link, or enter its token."


@contextmanager
def run_storage(db: Path) -> Iterator[Storage]:
    """The browser session's :class:`Storage`; its connection is closed when this script run ends."""
    storage = st.session_state.get("storage")
    if storage is None:
        storage = st.session_state.storage = Storage(db)
        st.session_state.session_id = uuid.uuid4().hex
    try:
        yield storage
    finally:
        storage.close()


def client_id() -> str:
    """Who failed sign-ins are counted against: the address Streamlit reports, else this browser session
    (Streamlit reports no address for loopback connections)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else f"session {st.session_state.session_id}"


def too_many(wait_s: float) -> str:
    minutes = max(1, math.ceil(wait_s / 60))
    return f"too many failed sign-ins from this address; try again in {minutes} minute{'s' if minutes > 1 else ''}"


def try_token(storage: Storage, token: str, *, invalid: str, now: float) -> Account | str:
    """The account ``token`` signs in, or the message to show; failures count against the client."""
    client = client_id()
    wait = storage.sign_in_wait(client, now=now)
    if wait > 0:
        return too_many(wait)  # refused without looking at the token
    account = storage.authenticate(token)
    if account is not None:
        return account
    if not token.strip():
        return invalid
    if storage.retired_token(token):
        return RETIRED
    storage.record_sign_in_failure(client, now=now)
    return invalid


def offered_token() -> tuple[str, str] | None:
    """A token this run has not tried yet, with the message for when it is invalid."""
    state = st.session_state
    link = st.query_params.get("token")
    if link is not None:
        del st.query_params["token"]  # out of the address bar
        return link, INVALID_LINK
    cookie = st.context.cookies.get(TOKEN_COOKIE)
    if isinstance(cookie, str) and cookie and not state.get("cookie_tried"):
        state.cookie_tried = True  # once per browser session: a reload is a new one
        return cookie, INVALID_COOKIE
    return None


def current_account(storage: Storage) -> Account | None:
    """The account this browser session signed in as, checked again now: None once its token was revoked
    or replaced. Widget callbacks run before the page's sign-in check, so a callback that writes calls this."""
    token = st.session_state.get(SESSION_TOKEN)
    return storage.authenticate(token) if token else None


def sign_in(storage: Storage, *, clock: Callable[[], float] = time.time) -> Account | None:
    """The signed-in account, or the sign-in form (and nothing of the study) when there is none."""
    state = st.session_state
    message = None
    offered = offered_token()
    if offered is not None:
        state.pop(SESSION_TOKEN, None)
        outcome = try_token(storage, offered[0], invalid=offered[1], now=clock())
        if isinstance(outcome, Account):
            state[SESSION_TOKEN] = offered[0].strip()
            return outcome
        message = outcome
    elif state.get(SESSION_TOKEN):
        account = current_account(storage)
        if account is not None:
            return account
        del state[SESSION_TOKEN]
        message = WITHDRAWN
    st.title("Sign in")
    if message:
        st.error(message)
    with st.form("sign_in"):
        entered = st.text_input("Access token", type="password")
        if st.form_submit_button("Sign in"):
            outcome = try_token(storage, entered, invalid=INVALID_TYPED, now=clock())
            if isinstance(outcome, Account):
                state[SESSION_TOKEN] = entered.strip()
                st.rerun()
            st.error(outcome)
    return None
