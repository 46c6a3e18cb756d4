"""Link-code email: rendering, delivery (file or SMTP) and the outbox relay.

The outbox row is written in the same database transaction as the link code, by the
store. `OutboxRelay` sends it after commit and marks it sent only once the mailer has
returned, so a crash between the two resends the message on restart (at-least-once).
The Message-ID is derived from the outbox id, so a resend overwrites the same `.eml`
file and lets mail receivers deduplicate.

Bodies hold link codes: they are never logged, only ids and recipients' domains are, and the
store keeps them encrypted (`authz.store.outbox.OutboxCipher`): nothing the database writes
to disk, its WAL and old row versions included, reads as a code. The relay receives them
opened, only to send.
"""

from __future__ import annotations

import email.policy
import logging
import os
import random
import re
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from authz.domain.dates import MONTREAL
from authz.domain.secrets import CODE_LENGTH, grouped_link_code
from authz.store.interface import OutboxRow
from authz.store.outbox import MailDeliveryError

__all__ = [
    "DEFAULT_SENDER",
    "EmailContent",
    "FileMailer",
    "MailDeliveryError",
    "Mailer",
    "OutboxMessage",
    "OutboxRelay",
    "OutboxStore",
    "SmtpMailer",
    "format_link_code",
    "mailer_from_url",
    "redact_addresses",
    "render_contact_update_email",
    "render_link_code_email",
    "render_link_moved_email",
]

logger = logging.getLogger("authz.mail")

DEFAULT_SENDER = "CCQ Services en ligne <no-reply@ccq.org>"
MESSAGE_ID_DOMAIN = "authz.local"
# Ids become file names and Message-ID local parts: keep them to a safe alphabet.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_ACCEPTED_URLS = "file:///some/dir, smtp://host[:port], smtp+starttls://[user:password@]host[:port]"
# The store keeps the error text; an SMTP transcript must not grow a row without bound.
_MAX_ERROR_CHARS = 1000


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class EmailContent:
    subject: str
    body: str


def format_link_code(code: str) -> str:
    """`abcd efgh-ijkl mnop` -> `ABCD-EFGH-IJKL-MNOP`; raises ValueError otherwise."""
    compact = re.sub(r"[\s-]", "", code).upper()
    if len(compact) != CODE_LENGTH or not compact.isascii() or not compact.isalnum():
        # Never echo the code: it is a secret even when malformed.
        raise ValueError(f"a link code has {CODE_LENGTH} letters or digits, got {len(compact)} characters")
    return grouped_link_code(compact)


def _one_line(text: str) -> str:
    # A name with a line break could forge a second "Code de liaison" line.
    return " ".join(text.split())


def _montreal_time(moment: datetime) -> str:
    # Naive datetimes come back from SQLite; the store writes them in UTC.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(MONTREAL).strftime("%Y-%m-%d %H:%M")


def _is_english(language: str) -> bool:
    tag = language.strip().lower().replace("_", "-")
    return tag == "en" or tag.startswith("en-")


def render_link_code_email(
    *,
    first_name: str,
    last_name: str,
    language: str,
    organization_name: str,
    code: str,
    expires_at: datetime,
) -> EmailContent:
    """The link-code email, in French unless the contact's language is English."""
    name = _one_line(f"{first_name} {last_name}")
    organization = _one_line(organization_name)
    formatted = format_link_code(code)
    expiry = _montreal_time(expires_at)
    if _is_english(language):
        return EmailContent(
            subject="Your link code for the CCQ online services",
            body=(
                f"Hello {name},\n"
                "\n"
                "Here is the code to link your account to your access for the organization\n"
                f"{organization}.\n"
                "\n"
                f"Link code: {formatted}\n"
                "\n"
                f"This code expires on {expiry} (Montreal time).\n"
                "It can be used only once.\n"
                "\n"
                "The CCQ will never ask you for this code by phone.\n"
                "Do not share it with anyone.\n"
                "If you were not expecting this message, you can ignore it.\n"
                "\n"
                "Commission de la construction du Québec\n"
            ),
        )
    return EmailContent(
        subject="Votre code de liaison aux Services en ligne de la CCQ",
        body=(
            f"Bonjour {name},\n"
            "\n"
            "Voici le code qui lie votre compte à vos accès pour l'organisation\n"
            f"{organization}.\n"
            "\n"
            f"Code de liaison : {formatted}\n"
            "\n"
            f"Ce code expire le {expiry} (heure de Montréal).\n"
            "Il ne peut être utilisé qu'une seule fois.\n"
            "\n"
            "La CCQ ne vous demandera jamais ce code par téléphone.\n"
            "Ne le communiquez à personne.\n"
            "Si vous n'attendiez pas ce message, vous pouvez l'ignorer.\n"
            "\n"
            "Commission de la construction du Québec\n"
        ),
    )


_FIELD_LABELS = {
    "first_name": ("Prénom", "First name"),
    "last_name": ("Nom", "Last name"),
    "email": ("Adresse courriel", "Email address"),
    "language": ("Langue de communication", "Language of communication"),
    "phone": ("Numéro de téléphone principal", "Main phone number"),
    "phone_type": ("Type du numéro de téléphone principal", "Main phone number type"),
    "phones": ("Numéros de téléphone", "Phone numbers"),
}


def render_contact_update_email(
    *, first_name: str, last_name: str, language: str, organization_name: str, changed_fields: list[str]
) -> EmailContent:
    """The email confirming a change of a contact's details, in the contact's language.

    It names what changed, not the new values: a message to an old address must not hand
    the new one to whoever reads it.
    """
    name = _one_line(f"{first_name} {last_name}")
    organization = _one_line(organization_name)
    english = _is_english(language)
    labels = "".join(f"- {_FIELD_LABELS.get(f, (f, f))[1 if english else 0]}\n" for f in changed_fields)
    if english:
        return EmailContent(
            subject="Your information was updated in the CCQ online services",
            body=(
                f"Hello {name},\n"
                "\n"
                f"The person responsible for the organization {organization}\n"
                "updated the following information in your file:\n"
                "\n"
                f"{labels}"
                "\n"
                "If you did not expect this change, contact your organization.\n"
                "\n"
                "Commission de la construction du Québec\n"
            ),
        )
    return EmailContent(
        subject="Vos informations ont été modifiées aux Services en ligne de la CCQ",
        body=(
            f"Bonjour {name},\n"
            "\n"
            f"La personne responsable de l'organisation {organization}\n"
            "a modifié les informations suivantes de votre dossier :\n"
            "\n"
            f"{labels}"
            "\n"
            "Si vous n'attendiez pas cette modification, communiquez avec votre organisation.\n"
            "\n"
            "Commission de la construction du Québec\n"
        ),
    )


def render_link_moved_email(*, first_name: str, last_name: str, language: str) -> EmailContent:
    """The notice to a person whose file was linked to another account by a new link code.

    It says that the previous account no longer reaches the file, and whom to ask if the
    person did not do it; it carries no code and no account id.
    """
    name = _one_line(f"{first_name} {last_name}")
    if _is_english(language):
        return EmailContent(
            subject="Your file was linked to another account in the CCQ online services",
            body=(
                f"Hello {name},\n"
                "\n"
                "A link code was just used to link your file to another account.\n"
                "The account that was linked to it before no longer has access to it.\n"
                "\n"
                "If you did not do this, contact your organization and the CCQ at once.\n"
                "\n"
                "Commission de la construction du Québec\n"
            ),
        )
    return EmailContent(
        subject="Votre dossier a été lié à un autre compte aux Services en ligne de la CCQ",
        body=(
            f"Bonjour {name},\n"
            "\n"
            "Un code de liaison vient d'être utilisé pour lier votre dossier à un autre compte.\n"
            "Le compte qui y était lié auparavant n'y a plus accès.\n"
            "\n"
            "Si vous n'êtes pas à l'origine de ce changement, communiquez sans tarder avec votre\n"
            "organisation et avec la CCQ.\n"
            "\n"
            "Commission de la construction du Québec\n"
        ),
    )


# --------------------------------------------------------------------------- mailers


class Mailer(Protocol):
    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        """Hand the message over, or raise MailDeliveryError."""
        ...


def _build_message(
    message_id: str, sender: str, recipient: str, subject: str, body: str, *, cte: str | None
) -> EmailMessage:
    if not _SAFE_ID.fullmatch(message_id):
        raise MailDeliveryError(f"unusable message id {message_id!r}: letters, digits, '.', '_' and '-' only")
    message = EmailMessage(policy=email.policy.default)
    try:
        message["From"] = sender
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<{message_id}@{MESSAGE_ID_DOMAIN}>"
        # RFC 3834: keeps vacation responders from answering a robot.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body, charset="utf-8", cte=cte)
    except ValueError as exc:
        # A line break in a header would be an injection; refuse the message, not the batch.
        raise MailDeliveryError(f"message {message_id} cannot be built: {exc}") from exc
    return message


class FileMailer:
    """Writes `<directory>/<message_id>.eml`; the default, and what tests and demos read."""

    def __init__(self, directory: Path, *, sender: str = DEFAULT_SENDER) -> None:
        self.directory = Path(directory)
        self.sender = sender

    def __repr__(self) -> str:
        return f"FileMailer(directory={str(self.directory)!r}, sender={self.sender!r})"

    def path_for(self, message_id: str) -> Path:
        return self.directory / f"{message_id}.eml"

    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        # cte None lets short UTF-8 lines stay 8bit, so the file is readable as is.
        data = _build_message(message_id, self.sender, recipient, subject, body, cte=None).as_bytes()
        target = self.path_for(message_id)
        try:
            # 0o700: the files hold link codes.
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Temp file in the same folder, then os.replace: readers never see half a message,
            # and a retry of the same id overwrites instead of adding a second file.
            fd, temp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{message_id}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp_name, target)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
            _fsync_directory(self.directory)
        except OSError as exc:
            raise MailDeliveryError(f"cannot write {target}: {exc}") from exc


def _fsync_directory(directory: Path) -> None:
    # The rename must survive a crash, since the outbox row is marked sent right after.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class SmtpMailer:
    """Sends through an SMTP relay, one connection a message (link codes are rare)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str = DEFAULT_SENDER,
        timeout: float = 10.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.starttls = starttls
        self.username = username
        self._password = password

    def __repr__(self) -> str:
        password = None if self._password is None else "***"
        return (
            f"SmtpMailer(host={self.host!r}, port={self.port}, sender={self.sender!r}, "
            f"timeout={self.timeout}, starttls={self.starttls}, username={self.username!r}, "
            f"password={password!r})"
        )

    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        # quoted-printable: 7-bit clean, whatever the relay says about 8BITMIME.
        message = _build_message(message_id, self.sender, recipient, subject, body, cte="quoted-printable")
        envelope_from = parseaddr(self.sender)[1]
        envelope_to = parseaddr(recipient)[1]
        if not envelope_to:
            raise MailDeliveryError(f"message {message_id}: no address in recipient {recipient!r}")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(message, from_addr=envelope_from, to_addrs=[envelope_to])
        except (smtplib.SMTPException, OSError) as exc:
            # smtplib errors carry the server's reply, never our password.
            raise MailDeliveryError(
                f"SMTP delivery of {message_id} to {self.host}:{self.port} failed: {type(exc).__name__}: {exc}"
            ) from exc


def mailer_from_url(url: str | None, default_directory: Path) -> Mailer:
    """The mailer named by AUTHZ_MAIL_URL; unset or empty writes files to default_directory."""
    if url is None or not url.strip():
        return FileMailer(default_directory)
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise ValueError(f"AUTHZ_MAIL_URL is not a valid URL; accepted forms: {_ACCEPTED_URLS}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"AUTHZ_MAIL_URL file URL must be local, as in file:///some/dir (not {parts.hostname!r})")
        if not parts.path:
            raise ValueError("AUTHZ_MAIL_URL file URL names no folder; use file:///some/dir")
        return FileMailer(Path(unquote(parts.path)))
    if scheme not in ("smtp", "smtp+starttls"):
        raise ValueError(f"AUTHZ_MAIL_URL has unsupported scheme {parts.scheme!r}; accepted forms: {_ACCEPTED_URLS}")
    # Errors below name host and port only: the URL may hold a password.
    starttls = scheme == "smtp+starttls"
    host = parts.hostname
    if not host:
        raise ValueError(f"AUTHZ_MAIL_URL names no SMTP host; accepted forms: {_ACCEPTED_URLS}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"AUTHZ_MAIL_URL has an invalid port for host {host!r}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"AUTHZ_MAIL_URL for SMTP takes no path or query; accepted forms: {_ACCEPTED_URLS}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and not starttls:
        # Credentials in clear over the wire: refuse rather than leak them.
        raise ValueError("AUTHZ_MAIL_URL carries credentials without TLS; use smtp+starttls://user:password@host:port")
    # 587 is the submission port, where STARTTLS and login are expected.
    default_port = 587 if starttls else 25
    return SmtpMailer(
        host,
        port if port is not None else default_port,
        starttls=starttls,
        username=username,
        password=password,
    )


# --------------------------------------------------------------------------- outbox relay


# The store's outbox row is the message: one definition, shared with the store interface.
OutboxMessage = OutboxRow


class OutboxStore(Protocol):
    def pending_outbox(
        self, limit: int, *, now: datetime | None = None, give_up_seconds: float | None = None
    ) -> list[OutboxMessage]:
        """Unsent messages due now and not yet expired, oldest first."""
        ...

    def mark_outbox_sent(self, message_id: str, sent_at: datetime) -> None: ...

    def mark_outbox_failed(self, message_id: str, error: str, retry_at: datetime | None = None) -> None:
        """Record the error and count the attempt; the message stays pending, due again at `retry_at`."""
        ...


_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@([A-Za-z0-9.-]+)")


def redact_addresses(text: str) -> str:
    """Email addresses in a log line or a stored error, reduced to their domain: `***@example.org`."""
    return _ADDRESS.sub(lambda found: f"***@{found.group(1)}", text)


class OutboxRelay:
    """Sends committed outbox messages, from a background thread or on demand."""

    def __init__(
        self,
        store: OutboxStore,
        mailer: Mailer,
        *,
        interval: float = 1.0,
        max_attempts: int | None = None,
        batch: int = 50,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        give_up_seconds: float = 24 * 3600,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if interval <= 0 or (max_attempts is not None and max_attempts < 1) or batch < 1:
            raise ValueError("interval must be positive, max_attempts and batch at least 1")
        if retry_initial <= 0 or retry_max < retry_initial or give_up_seconds <= 0:
            raise ValueError("0 < retry_initial <= retry_max, give_up_seconds positive")
        self._store = store
        self._mailer = mailer
        self._interval = interval
        # None: no count limit; a message is retried until it expires (a link code's expiry, else give_up_seconds).
        self._max_attempts = max_attempts
        self._batch = batch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._give_up_seconds = give_up_seconds
        # The service's clock: the one that stamped each message's queueing time and expiry.
        self._clock = clock or (lambda: datetime.now(UTC))
        # One pass at a time, so the thread and a direct caller never send the same row twice.
        self._pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Running totals, read by /metrics (authz_outbox_sent_total, authz_outbox_failures_total).
        self.sent_count = 0
        self.failure_count = 0

    def deliver_pending(self) -> int:
        """Send each pending message once; return how many were sent.

        A failed send is recorded and the pass goes on. A store error propagates: if the
        database is gone there is nothing to mark, and unmarked rows are resent later.
        """
        sent = 0
        with self._pass_lock:
            now = self._clock()
            for message in self._store.pending_outbox(self._batch, now=now, give_up_seconds=self._give_up_seconds):
                if self._max_attempts is not None and message.attempts >= self._max_attempts:
                    # Left for an operator; the store should stop returning these.
                    logger.debug("outbox %s skipped after %d attempts", message.id, message.attempts)
                    continue
                try:
                    self._mailer.send(message.id, message.recipient, message.subject, message.body)
                except (MailDeliveryError, OSError) as exc:
                    error = str(exc) if isinstance(exc, MailDeliveryError) else f"{type(exc).__name__}: {exc}"
                    # Neither the log nor the stored error keeps an address.
                    error = redact_addresses(error)[:_MAX_ERROR_CHARS]
                    pause = self.backoff(message.attempts + 1)
                    logger.warning(
                        "outbox %s to %s failed (attempt %d, next in %.0fs): %s",
                        message.id,
                        redact_addresses(message.recipient),
                        message.attempts + 1,
                        pause,
                        error,
                    )
                    self.failure_count += 1
                    self._store.mark_outbox_failed(message.id, error, now + timedelta(seconds=pause))
                    continue
                # Only now: a crash before this line resends, which Message-ID makes harmless.
                self._store.mark_outbox_sent(message.id, datetime.now(UTC))
                logger.info("outbox %s sent to %s", message.id, redact_addresses(message.recipient))
                sent += 1
                self.sent_count += 1
        return sent

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones: doubling from retry_initial up to
        retry_max, less a random tenth, so that the workers of a deployment do not retry in step."""
        ceiling = min(self._retry_max, self._retry_initial * 2.0 ** min(attempts - 1, 40))
        return ceiling * (1.0 - 0.1 * random.random())

    def start(self) -> None:
        """Start the background thread; a no-op if it is already running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name="authz-outbox-relay", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a pass now rather than at the next tick; call it after a commit."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for the pass in progress, up to timeout seconds."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("outbox relay still sending after %.1f s; left as a daemon thread", timeout)
        else:
            self._thread = None

    def _run(self) -> None:
        logger.info("outbox relay started (every %.1f s)", self._interval)
        while not self._stopping.is_set():
            # Cleared before the pass: a wake() during the pass triggers another one.
            self._wake.clear()
            try:
                self.deliver_pending()
            except Exception:
                # The thread must outlive a database hiccup; the next tick retries.
                logger.exception("outbox relay pass failed")
            self._wake.wait(self._interval)
        logger.info("outbox relay stopped")
