"""Symmetric encryption of secrets stored in the database (e.g. a PBX's ARI password), with Fernet
(AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The key comes from ``FIELD_ENCRYPTION_KEY``: one or more comma-separated Fernet keys (urlsafe base64 of 32
bytes; make one with ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key()
.decode())"``). The first key encrypts; every key decrypts, so a key can be rotated by prepending the new
one and re-saving the secrets. With ``DEBUG`` on and no key set, a key derived from ``SECRET_KEY`` is used
so the local product works without configuration; with ``DEBUG`` off a missing or malformed key is a
configuration error **at start-up** (the settings call :func:`check_keys`): every process that loads the
Django settings refuses to start, instead of answering 500 at the first write of a secret. The media worker
does not load them and needs no key.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt"]


def _debug_key() -> bytes:
    digest = hashlib.sha256(b"orchestrator.crypto:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def check_keys(configured: str, *, debug: bool) -> None:
    """Refuse a missing key outside DEBUG, and any key that is not a Fernet key (ImproperlyConfigured)."""
    _parse(configured, debug=debug)


def _fernet() -> MultiFernet:
    configured: str = getattr(settings, "FIELD_ENCRYPTION_KEY", "") or ""
    fernets = _parse(configured, debug=settings.DEBUG)
    return MultiFernet(fernets or [Fernet(_debug_key())])


def _parse(configured: str, *, debug: bool) -> list[Fernet]:
    keys = [key.strip() for key in configured.split(",") if key.strip()]
    if not keys and not debug:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is not set, so secrets stored in the database cannot be encrypted or "
            'decrypted. Set it to a Fernet key (python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"), or run with DEBUG=1 for local development.'
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY: key #{position} is not a Fernet key "
                "(urlsafe base64 of 32 bytes, 44 characters)."
            ) from exc
    return fernets


def encrypt(plaintext: str) -> str:
    """A Fernet token (ASCII text) for ``plaintext``."""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of a token made by :func:`encrypt`; ``InvalidToken`` if no configured key opens it."""
    return _fernet().decrypt(token.encode("ascii")).decode()
