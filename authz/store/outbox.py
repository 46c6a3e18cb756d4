"""The outbox at rest: link-code emails are sealed before the database sees them.

The store writes an outbox row in the same transaction as the link code it carries, and
keeps its body encrypted (`OutboxCipher`): nothing the database writes to disk, its WAL
and old row versions included, reads as a code. The relay (`authz.mail.OutboxRelay`)
receives the bodies opened, sends them, and the store then drops them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import make_url

from authz.config import ConfigError, Settings

__all__ = ["MailDeliveryError", "OutboxCipher", "outbox_cipher"]

logger = logging.getLogger("authz.mail")


class MailDeliveryError(Exception):
    """A message could not be handed over; the outbox keeps it for another attempt."""


class OutboxCipher:
    """Encrypts outbox bodies at rest (Fernet: AES-128-CBC and HMAC-SHA256, authenticated).

    What the store writes is `enc1:` and a Fernet token; a body without the prefix (a row
    written before encryption, or the marker left once sent) is read as it is.
    """

    PREFIX = "enc1:"

    def __init__(self, key: bytes, source: str) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"the outbox key from {source} is not a Fernet key (32 bytes, url-safe base64; "
                "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None

    @classmethod
    def ephemeral(cls) -> OutboxCipher:
        """A key that lives as long as the process: for an in-memory database, which does too."""
        return cls(Fernet.generate_key(), "a key of this process only")

    def seal(self, body: str) -> str:
        return self.PREFIX + self._fernet.encrypt(body.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(self.PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(self.PREFIX) :].encode()).decode()
        except InvalidToken:
            raise MailDeliveryError(
                "the outbox body cannot be decrypted with this server's outbox key "
                "(every server of one deployment needs the same AUTHZ_OUTBOX_KEY)"
            ) from None


def outbox_cipher(settings: Settings) -> OutboxCipher:
    """The outbox key, from where the settings say; never from the database it protects.

    `AUTHZ_OUTBOX_KEY`, else the file `AUTHZ_OUTBOX_KEY_FILE`, else (embedded SQLite) the
    file `<database>.outbox-key` beside the database, created 0600 on first use. On
    PostgreSQL one of the two settings is required: every server of the deployment sends
    what any of them queued, so they all need the same key, and it must not sit in the
    database. An in-memory SQLite database gets a key of the process.
    """
    if settings.outbox_key:
        return OutboxCipher(settings.outbox_key.encode(), "AUTHZ_OUTBOX_KEY")
    path = settings.outbox_key_file
    if path is None:
        url = make_url(settings.database_url)
        if url.get_backend_name() != "sqlite":
            raise ConfigError(
                "the outbox keeps link codes encrypted and its key must not sit in the database: "
                "set AUTHZ_OUTBOX_KEY (a Fernet key, the same on every server) or AUTHZ_OUTBOX_KEY_FILE"
            )
        if not url.database or url.database == ":memory:":
            return OutboxCipher.ephemeral()
        path = Path(url.database).resolve().with_name(Path(url.database).name + ".outbox-key")
    return OutboxCipher(_read_or_create_key(path), str(path))


def _read_or_create_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked: a second server starting at the same
        # time either creates the file or reads the complete one the first made, never half of it.
        descriptor, temporary = tempfile.mkstemp(prefix=".outbox-key-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
            try:
                os.link(temporary, path)
                logger.info("created the outbox key file %s (0600); keep it out of database backups", path)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    try:
        mode = path.stat().st_mode
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the outbox key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        logger.warning("the outbox key file %s is readable by other users (mode %o): chmod 600 it", path, mode & 0o777)
    return key
