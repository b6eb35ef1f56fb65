"""The auth service's cryptography: password hashes, opaque tokens, signed access tokens.

- Passwords: scrypt from ``hashlib`` (memory-hard: n=2**14, r=8, p=1 is 16 MiB and ~50 ms a
  hash here), a random 16-byte salt each, stored as ``scrypt$n$r$p$salt$hash`` so the cost can
  rise later without breaking old hashes. Compared with ``hmac.compare_digest``.
- Opaque tokens (refresh, email verification, password reset): 32 random bytes; only their
  SHA-256 is stored, so a copy of the data folder does not hold a usable token.
- Access tokens: JWTs signed with HS256 by PyJWT (a well-kept library: hand-made JWT code is
  where ``alg: none`` and key-confusion bugs come from). The key is the data folder's own
  secret, created on first use with mode 0600 (write to a temp file, then ``link``, which fails
  if another process got there first, so every process ends up with the same key) and never
  served by any route. Expiry is checked against the platform's clock, not the wall clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import jwt

__all__ = [
    "SECRET_NAME",
    "dummy_verify",
    "hash_password",
    "hash_token",
    "new_token",
    "sign_access",
    "verify_access",
    "verify_password",
]

SECRET_NAME = "auth-secret"
"""The store secret that signs access tokens (in a data folder: ``auth-secret.key``)."""
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_ALGORITHM = "HS256"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` (CPU- and memory-heavy: call it in a thread)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32
    )
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison of the digests)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY = f"scrypt${_N}${_R}${_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


def dummy_verify(password: str) -> None:
    """Spend what a real check costs, so an unknown email answers as slowly as a wrong password."""
    verify_password(password, _DUMMY)


def new_token() -> str:
    """An unguessable opaque token (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored for an opaque token (its SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign_access(key: bytes, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def verify_access(key: bytes, token: str, now_s: int) -> dict[str, Any] | None:
    """The claims of a valid, unexpired access token signed with ``key``; else None."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],  # exactly ours: no 'none', no key confusion
            # Time claims are checked below against the platform's clock, not time.time().
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["exp", "sub", "sid", "typ"],
            },
        )
    except jwt.InvalidTokenError:
        return None
    exp = claims.get("exp")
    if claims.get("typ") != "access" or not isinstance(exp, int) or exp <= now_s:
        return None
    return claims
