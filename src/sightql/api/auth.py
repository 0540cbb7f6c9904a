"""Bearer-token auth, and the rule that only a loopback address may be served without a token."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from typing import Callable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sightql.errors import ConfigError

TOKEN_ENV = "SIGHTQL_API_TOKEN"
_bearer = HTTPBearer(auto_error=False, description=f"The value of ${TOKEN_ENV} the server was started with.")


def token_guard(token: str | None) -> Callable[..., None]:
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``."""

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if token is None:
            return
        if credentials is None:
            raise _unauthorized(f"this API needs a token: send the header 'Authorization: Bearer <${TOKEN_ENV}>'")
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise _unauthorized(f"the bearer token is wrong; send the ${TOKEN_ENV} the server was started with")

    return require_token


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_can_listen(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without a token: set {TOKEN_ENV} "
            "(e.g. to the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
            "or listen on 127.0.0.1"
        )
