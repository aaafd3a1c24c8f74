"""Who may use the page: where it listens, the token, and the checks every request passes.

* It listens on 127.0.0.1 unless told otherwise; any other address needs a token (the
  ``MMAD_EDGE_UI_TOKEN`` environment variable or a file), or it refuses to start.
* With a token, every route (the page, events, images) needs it: ``?token=`` once (answered with
  a cookie, HttpOnly and SameSite=Strict, and a redirect that drops it from the address), the
  cookie, or an ``Authorization: Bearer`` header.
* Without a token (loopback only) the ``Host`` header must name this machine, so a page
  elsewhere cannot reach the server through DNS rebinding.
* A request that changes something (POST) must carry ``X-MMAD-Edge-CSRF``, a random value the
  page receives inside itself, and an ``Origin`` (when sent) naming this server: a page of
  another site can neither read that value nor send the header without a preflight that is
  never granted.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_ENV = "MMAD_EDGE_UI_TOKEN"
COOKIE = "mmad_edge_ui"
CSRF_HEADER = "x-mmad-edge-csrf"
DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MIN_TOKEN = 16


class UiConfigError(ValueError):
    """A --ui address or token that cannot be used; the message is one line naming the fix."""


@dataclass(frozen=True)
class TokenSource:
    """Where a server's address and token come from, for the messages: its address flag, its token
    file flag and its environment variable (the page's by default; `serve` has its own)."""

    address_flag: str = "--ui"
    file_flag: str = "--ui-token-file"
    env: str = TOKEN_ENV


UI_TOKEN = TokenSource()


def parse_bind(text: str) -> tuple[str, int]:
    """``"PORT"``, ``"HOST:PORT"`` or ``"[IPv6]:PORT"`` as (host, port); host 127.0.0.1 when left out,
    port 0 for any free one (the page's address is said at start)."""
    host, sep, port = str(text).strip().rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise UiConfigError(f"--ui {text!r}: expected PORT or HOST:PORT with a port 0-65535 (0: any free one), "
                            "e.g. --ui 127.0.0.1:8080")
    return host or DEFAULT_HOST, int(port)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token_file: str | os.PathLike[str] | None = None,
                  environ: dict[str, str] | None = None, source: TokenSource = UI_TOKEN) -> str | None:
    """The token from ``token_file`` or the environment (None when neither gives one); an address
    beyond this machine without one is refused in one line."""
    token = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UiConfigError(f"{source.file_flag} {token_file}: cannot read it ({exc.strerror}); pass a readable "
                                "file holding the token") from None
        if not token:
            raise UiConfigError(f"{source.file_flag} {token_file} is empty; write a token into it (e.g. the output of "
                                "`python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    else:
        token = (os.environ if environ is None else environ).get(source.env, "").strip() or None
    check_bind(host, token, source)
    return token


def check_bind(host: str, token: str | None, source: TokenSource = UI_TOKEN) -> None:
    """Refuse, in one line, an address beyond this machine without a token, and a short token."""
    if token is None and not is_loopback(host):
        raise UiConfigError(f"{source.address_flag} on {host} listens beyond this machine and needs a token: set "
                            f"{source.env} or pass {source.file_flag} FILE (or listen on 127.0.0.1)")
    if token is not None and len(token) < MIN_TOKEN:
        raise UiConfigError(f"the token ({source.file_flag} or {source.env}) is {len(token)} characters long; use "
                            f"at least {MIN_TOKEN} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")


@dataclass(frozen=True)
class Guard:
    """The checks of one server: its token (None: loopback without one), the port it listens on
    for the Host check, and the per-process CSRF value the page carries."""

    token: str | None
    port: int
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def authorized(self, query_token: str | None, cookie: str | None, authorization: str | None) -> bool:
        """True without a token, or when one of the three carries it."""
        if self.token is None:
            return True
        bearer = authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None
        return any(_same(candidate, self.token) for candidate in (query_token, cookie, bearer))

    def host_allowed(self, host_header: str | None) -> bool:
        """Without a token, only requests addressed to this machine by name or loopback address."""
        if self.token is not None:
            return True
        host = urlsplit(f"//{host_header or ''}").hostname or ""
        return host in LOOPBACK_NAMES or is_loopback(host)

    def same_site(self, csrf_header: str | None, origin: str | None, host_header: str | None) -> bool:
        """A state-changing request from the page itself: the CSRF value, and an Origin (if any) of this host."""
        if not _same(csrf_header, self.csrf):
            return False
        return origin is None or urlsplit(origin).netloc == (host_header or "")


def _same(candidate: str | None, expected: str) -> bool:
    return candidate is not None and hmac.compare_digest(candidate.encode(), expected.encode())
