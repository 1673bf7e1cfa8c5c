"""The study server: Streamlit's own server for the app (``st.App``) behind a small gate.

``xreal-bench study serve`` runs ``streamlit run`` on this file (Streamlit finds :data:`app`). The gate
(:class:`StudyGate`, an ASGI middleware that sees every request before Streamlit's routes):

- moves a link's token out of the address: ``GET /?token=T`` is answered with a redirect to the
  same address without ``token`` and an HttpOnly, SameSite=Strict cookie holding ``T`` (Secure when
  the request came over https), which the app reads (:mod:`~xreal_bench.reader_study.access`);
  the browser never shows or stores the address with the token in the tab;
- keeps Streamlit's metrics endpoint (``/_stcore/metrics``: sessions, caches, memory; Streamlit
  has no option to turn it off) to the study organiser: it answers only a request carrying the
  admin token as ``Authorization: Bearer TOKEN``; wrong tokens count as failed sign-ins of the
  client's address (the same limit as the sign-in form).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from xreal_bench.reader_study.access import TOKEN_COOKIE, too_many
from xreal_bench.reader_study.layout import APP_SCRIPT, STUDY_DB, STUDY_DIR_ENV
from xreal_bench.reader_study.storage import Storage

METRICS_SUFFIX = "/_stcore/metrics"
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what new_token() makes; anything else is left to the app


class StudyGate:
    """ASGI middleware: link tokens into a cookie, the metrics endpoint behind the admin token."""

    def __init__(self, app: ASGIApp, study_db: Path | None = None) -> None:
        self.app = app
        self.study_db = study_db

    def database(self) -> Path | None:
        if self.study_db is not None:
            return self.study_db
        folder = os.environ.get(STUDY_DIR_ENV)
        return Path(folder) / STUDY_DB if folder else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"].rstrip("/").endswith(METRICS_SUFFIX):
                status, message = await run_in_threadpool(self.metrics_access, scope)
                if status != 200:
                    await respond(send, status, message.encode(), [(b"www-authenticate", b"Bearer")])
                    return
            elif scope["method"] in ("GET", "HEAD"):
                query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                tokens = [value for key, value in query if key == "token"]
                if tokens and TOKEN_SHAPE.fullmatch(tokens[-1]):
                    await self.token_to_cookie(scope, send, tokens[-1], [(k, v) for k, v in query if k != "token"])
                    return
        await self.app(scope, receive, send)

    async def token_to_cookie(self, scope: Scope, send: Send, token: str, rest: list[tuple[str, str]]) -> None:
        path = same_site_path(scope.get("root_path", "") + scope.get("raw_path", scope["path"].encode()).decode("latin-1"))
        location = path + (f"?{urlencode(rest)}" if rest else "")
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
        headers = [
            (b"location", location.encode("latin-1")),
            (b"set-cookie", cookie.encode("latin-1")),
            (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"),
        ]
        await respond(send, 303, b"", headers)

    def metrics_access(self, scope: Scope) -> tuple[int, str]:
        """200 for the study's admin token; else the refusal (a wrong token counts as a failed sign-in)."""
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, "the metrics endpoint needs the study's admin token: Authorization: Bearer TOKEN\n"
        db = self.database()
        if db is None or not db.is_file():
            return 401, "this server has no study, hence no admin token\n"
        client = (scope.get("client") or ("unknown", 0))[0]
        now = time.time()
        with Storage(db) as storage:
            wait = storage.sign_in_wait(client, now=now)
            if wait > 0:
                return 429, too_many(wait) + "\n"
            account = storage.authenticate(token)
            if account is not None and account.role == "admin":
                return 200, ""
            if account is None and not storage.retired_token(token):
                storage.record_sign_in_failure(client, now=now)
        return 401, "not the study's admin token\n"


def same_site_path(path: str) -> str:
    """``path`` as a redirect target that stays on this server: leading ``/`` and ``\\`` collapse into
    one ``/`` (a browser reads ``//host`` and ``/\\host`` as another site)."""
    return "/" + path.lstrip("/\\")


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    base = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": base + headers})
    await send({"type": "http.response.body", "body": body})


app = st.App(APP_SCRIPT, middleware=[Middleware(StudyGate)])
