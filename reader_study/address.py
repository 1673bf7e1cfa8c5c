"""Where a study is served: the base URL the readers' links point at, and the ``study serve`` flags
that make those links work.

- ``http://HOST[:PORT][/PATH]``: the study server answers the links itself, on ``PORT`` (80 when
  the URL has none), bound to ``localhost`` when ``HOST`` is this machine's loopback name and to
  every interface (``0.0.0.0``) otherwise;
- ``https://...``: a TLS reverse proxy on this machine answers the links and forwards them to the
  study server on ``localhost:8501`` (Streamlit itself speaks plain HTTP here).

``PATH`` becomes Streamlit's ``server.baseUrlPath``. ``study create``, ``add-reader`` and ``links``
remember the last base URL given in the study database (meta ``base_url``), so later commands
print links and serve commands that match without repeating it.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from xreal_bench.errors import UserFacingError

if TYPE_CHECKING:
    from xreal_bench.reader_study.storage import Storage

DEFAULT_BASE_URL = "http://localhost:8501"
PROXIED_PORT = 8501  # where the study server listens behind an https proxy
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BASE_URL_META = "base_url"


@dataclass(frozen=True)
class BaseUrl:
    """A checked base URL (``url`` is normalised: lower-case scheme, no trailing slash)."""

    url: str
    scheme: str
    host: str
    port: int | None  # as written in the URL (None: the scheme's default)
    path: str  # "" or "/sub/path"

    @property
    def proxied(self) -> bool:
        return self.scheme == "https"

    @property
    def is_local(self) -> bool:
        return self.host in LOOPBACK_NAMES or self.host.startswith("127.")

    @property
    def serve_port(self) -> int:
        if self.proxied:
            return PROXIED_PORT
        return 80 if self.port is None else self.port

    @property
    def serve_host(self) -> str:
        return "localhost" if self.proxied or self.is_local else "0.0.0.0"

    def link(self, token: str) -> str:
        return f"{self.url}/?token={token}"


def parse_base_url(text: str) -> BaseUrl:
    """``text`` as a :class:`BaseUrl`, or a :class:`UserFacingError` saying what is wrong."""
    expected = "expected http://HOST[:PORT][/PATH] or https://HOST[:PORT][/PATH]"
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UserFacingError(f"base URL {text!r}: {expected}")
    if parts.username is not None or parts.query or parts.fragment:
        raise UserFacingError(f"base URL {text!r}: no user name, query or fragment allowed; {expected}")
    try:
        port = parts.port
    except ValueError:
        raise UserFacingError(f"base URL {text!r}: the port is not a number from 0 to 65535") from None
    path = parts.path.rstrip("/")
    if any(c.isspace() for c in path):
        raise UserFacingError(f"base URL {text!r}: the path must not contain spaces")
    return BaseUrl(f"{scheme}://{parts.netloc}{path}", scheme, parts.hostname, port, path)


def base_url_argument(text: str) -> BaseUrl:
    """An argparse ``type=`` for ``--base-url``."""
    try:
        return parse_base_url(text)
    except UserFacingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serve_hint(study_dir: Path, base: BaseUrl) -> str:
    """The ``study serve`` command line under which ``base``'s links work."""
    words = ["xreal-bench", "study", "serve", str(study_dir), "--port", str(base.serve_port)]
    if base.serve_host != "localhost":
        words += ["--host", base.serve_host]
    words += ["--base-url", base.url]
    hint = shlex.join(words)
    if base.proxied:
        hint += f"  (behind your TLS proxy for {base.url}, forwarding to http://localhost:{base.serve_port})"
    return hint


def stored_base_url(storage: Storage) -> BaseUrl | None:
    value = storage.meta(BASE_URL_META)
    return None if value is None else parse_base_url(value)


def remember_base_url(storage: Storage, base: BaseUrl) -> None:
    with storage.write() as conn:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (BASE_URL_META, base.url),
        )
