"""Who may do what: a token printed at start; actions need it in a header (never a cookie), so no cross-site
form can act; on a non-loopback address every page needs it too."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

HEADER = "X-Orch-Token"


def new_token() -> str:
    return secrets.token_urlsafe(18)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(token: str, given: str | None) -> int | None:
    """None when `given` is the token, else the HTTP status to refuse with (401 none given, 403 a wrong one)."""
    if not given:
        return 401
    return None if hmac.compare_digest(given.encode(), token.encode()) else 403


def loopback_name(host_header: str | None) -> bool:
    """The Host a browser sent names a loopback address (a DNS-rebinding page names its own domain instead)."""
    name = urlsplit(f"//{host_header or ''}").hostname or ""
    return is_loopback(name)


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """A browser's Origin (sent with every cross-site POST) must name this server; no Origin (curl) is fine."""
    if not origin:
        return True
    return bool(host_header) and urlsplit(origin).netloc == host_header
