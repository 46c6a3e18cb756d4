"""authz.mail: rendering, the file and SMTP mailers, the URL setting and the outbox relay.

SMTP is exercised against a real aiosmtpd server on 127.0.0.1, not a mock of smtplib.
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from authz.mail import (
    DEFAULT_SENDER,
    FileMailer,
    MailDeliveryError,
    OutboxMessage,
    OutboxRelay,
    SmtpMailer,
    format_link_code,
    mailer_from_url,
    redact_addresses,
    render_link_code_email,
)

EXPIRES_WINTER = datetime(2026, 11, 27, 19, 5, tzinfo=UTC)  # 14:05 EST
BODY_WITH_CODE = "Bonjour Marie-Hélène,\n\nCode de liaison : ABCD-EFGH-JKLM-NPQR\n"


def render(language: str = "fr", code: str = "abcdefghjkmnpqrs", **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "first_name": "Marie-Hélène",
        "last_name": "Demers",
        "language": language,
        "organization_name": "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION",
        "code": code,
        "expires_at": EXPIRES_WINTER,
    }
    arguments.update(overrides)
    return render_link_code_email(**arguments)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    content = message.get_content()
    assert isinstance(content, str)
    return content


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --------------------------------------------------------------------------- rendering


class TestRender:
    def test_french_by_default(self) -> None:
        content = render("fr")
        lines = content.body.splitlines()
        assert "Code de liaison : ABCD-EFGH-JKMN-PQRS" in lines
        assert "Marie-Hélène Demers" in content.body
        assert "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION" in content.body
        assert "2026-11-27 14:05 (heure de Montréal)" in content.body
        assert "une seule fois" in content.body
        assert "téléphone" in content.body
        assert "code de liaison" in content.subject.lower()

    @pytest.mark.parametrize("language", ["", "fr", "de", "fr-CA"])
    def test_anything_but_english_is_french(self, language: str) -> None:
        assert "Code de liaison : ABCD-EFGH-JKMN-PQRS" in render(language).body.splitlines()

    @pytest.mark.parametrize("language", ["en", "EN", "en-CA"])
    def test_english(self, language: str) -> None:
        content = render(language)
        lines = content.body.splitlines()
        assert "Link code: ABCD-EFGH-JKMN-PQRS" in lines
        assert not any(line.startswith("Code de liaison") for line in lines)
        assert "Marie-Hélène Demers" in content.body
        assert "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION" in content.body
        assert "2026-11-27 14:05 (Montreal time)" in content.body
        assert "only once" in content.body
        assert "by phone" in content.body
        assert "link code" in content.subject.lower()

    def test_code_line_appears_exactly_once(self) -> None:
        lines = render("fr").body.splitlines()
        assert sum(line.startswith("Code de liaison") for line in lines) == 1

    @pytest.mark.parametrize(
        "code", ["abcdefghjkmnpqrs", "ABCD-EFGH-JKMN-PQRS", "abcd-efgh-jkmn-pqrs", " abcd efgh jkmn pqrs "]
    )
    def test_code_is_normalised(self, code: str) -> None:
        assert format_link_code(code) == "ABCD-EFGH-JKMN-PQRS"
        assert "Code de liaison : ABCD-EFGH-JKMN-PQRS" in render(code=code).body.splitlines()

    @pytest.mark.parametrize(
        "code", ["", "ABCD-EFGH-JKMN", "abcdefghjkmnpqrst", "ABCD-EFGH-JKMN-PQR!", "ÀBCDEFGHJKMNPQRS"]
    )
    def test_malformed_code_is_refused_without_echoing_it(self, code: str) -> None:
        with pytest.raises(ValueError) as caught:
            format_link_code(code)
        if code:
            assert code not in str(caught.value)

    def test_summer_time_and_naive_utc(self) -> None:
        # 16:00 UTC in July is 12:00 EDT; a naive datetime is taken as UTC (as SQLite returns it).
        assert "2026-07-01 12:00 (heure de Montréal)" in render(expires_at=datetime(2026, 7, 1, 16, 0)).body
        aware = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
        assert "2026-07-01 12:00 (Montreal time)" in render("en", expires_at=aware).body

    def test_a_line_break_in_a_name_cannot_forge_a_code_line(self) -> None:
        content = render(organization_name="ACME\nCode de liaison : ZZZZ-ZZZZ-ZZZZ-ZZZZ")
        lines = content.body.splitlines()
        assert sum(line.startswith("Code de liaison") for line in lines) == 1
        assert "Code de liaison : ABCD-EFGH-JKMN-PQRS" in lines

    def test_body_lines_are_short(self) -> None:
        # Short lines keep the .eml in readable 8bit rather than base64.
        for language in ("fr", "en"):
            body = render(language, organization_name="Construction ABC inc.").body
            assert max(len(line) for line in body.splitlines()) <= 78


# --------------------------------------------------------------------------- FileMailer


class TestFileMailer:
    def test_writes_a_parseable_eml(self, tmp_path: Path) -> None:
        directory = tmp_path / "outbox" / "nested"
        mailer = FileMailer(directory)
        content = render()
        mailer.send("msg-1", "mh.demers@example.org", content.subject, content.body)

        files = list(directory.iterdir())
        assert files == [directory / "msg-1.eml"]
        raw = files[0].read_bytes()
        message = parse(raw)
        assert message["From"] == DEFAULT_SENDER
        assert message["To"] == "mh.demers@example.org"
        assert message["Subject"] == content.subject
        assert message["Message-ID"] == "<msg-1@authz.local>"
        assert parsedate_to_datetime(message["Date"]).tzinfo is not None
        assert message.get_content_charset() == "utf-8"
        assert text_of(message) == content.body
        # Readable (and greppable) as is, not base64.
        assert "Code de liaison : ABCD-EFGH-JKMN-PQRS" in raw.decode("utf-8")
        assert "Marie-Hélène" in raw.decode("utf-8")

    def test_custom_sender(self, tmp_path: Path) -> None:
        FileMailer(tmp_path, sender="Tests <t@example.org>").send("m", "a@example.org", "s", "b\n")
        assert parse((tmp_path / "m.eml").read_bytes())["From"] == "Tests <t@example.org>"

    def test_same_id_overwrites(self, tmp_path: Path) -> None:
        mailer = FileMailer(tmp_path)
        mailer.send("msg-1", "a@example.org", "first", "one\n")
        mailer.send("msg-1", "a@example.org", "second", "two\n")
        assert [p.name for p in tmp_path.iterdir()] == ["msg-1.eml"]
        message = parse((tmp_path / "msg-1.eml").read_bytes())
        assert message["Subject"] == "second"
        assert text_of(message) == "two\n"

    @pytest.mark.parametrize("message_id", ["../escape", "a/b", "", ".hidden", "a b"])
    def test_unsafe_id_is_refused(self, tmp_path: Path, message_id: str) -> None:
        directory = tmp_path / "outbox"
        with pytest.raises(MailDeliveryError):
            FileMailer(directory).send(message_id, "a@example.org", "s", "b\n")
        assert list(tmp_path.rglob("*.eml")) == []

    def test_header_injection_is_a_delivery_error(self, tmp_path: Path) -> None:
        with pytest.raises(MailDeliveryError):
            FileMailer(tmp_path).send("m", "a@example.org", "hi\nBcc: evil@example.org", "b\n")
        with pytest.raises(MailDeliveryError):
            FileMailer(tmp_path).send("m", "a@example.org\r\nBcc: evil@example.org", "s", "b\n")
        assert list(tmp_path.iterdir()) == []

    def test_unwritable_folder_is_a_delivery_error(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        with pytest.raises(MailDeliveryError):
            FileMailer(blocker / "outbox").send("m", "a@example.org", "s", "b\n")


# --------------------------------------------------------------------------- SmtpMailer


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def free_port() -> int:
    # aiosmtpd's Controller connects to its own port once started, so port 0 will not do.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    handler: RecordingHandler
    port: int
    logins: list[tuple[bytes, bytes]]


def run_server(logins: list[tuple[bytes, bytes]] | None = None, **kwargs: Any) -> Iterator[SmtpServer]:
    # aiosmtpd is a test-only dependency: without it only the tests needing a server are skipped.
    aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
    handler = RecordingHandler()
    port = free_port()
    controller = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer(handler, port, logins if logins is not None else [])
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from run_server()


@pytest.fixture
def smtp_server_with_auth() -> Iterator[SmtpServer]:
    aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        logins.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (b"relay", b"s3cret")
        # handled=False makes aiosmtpd answer 535 itself; its default leaves the client waiting.
        return aiosmtpd_smtp.AuthResult(success=ok, handled=False)

    # No TLS certificate in unit tests, so the server accepts AUTH in clear.
    yield from run_server(logins, authenticator=authenticator, auth_require_tls=False)


class TestSmtpMailer:
    def test_delivers_to_a_real_server(self, smtp_server: SmtpServer) -> None:
        content = render()
        mailer = SmtpMailer("127.0.0.1", smtp_server.port)
        mailer.send("msg-7", "Marie-Hélène Demers <mh.demers@example.org>", content.subject, content.body)

        assert len(smtp_server.handler.received) == 1
        received = smtp_server.handler.received[0]
        assert received.mail_from == "no-reply@ccq.org"
        assert received.rcpt_tos == ["mh.demers@example.org"]
        message = parse(received.content)
        assert message["To"] == "Marie-Hélène Demers <mh.demers@example.org>"
        assert message["Subject"] == content.subject
        assert message["From"] == DEFAULT_SENDER
        assert message["Message-ID"] == "<msg-7@authz.local>"
        assert text_of(message).replace("\r\n", "\n") == content.body  # CRLF on the wire
        assert "Code de liaison : ABCD-EFGH-JKMN-PQRS" in text_of(message).splitlines()
        # 7-bit clean on the wire, whatever the relay supports.
        received.content.decode("ascii")

    def test_refused_recipient_is_a_delivery_error(self, smtp_server: SmtpServer) -> None:
        smtp_server.handler.refuse.add("nobody@example.org")
        with pytest.raises(MailDeliveryError, match="msg-8"):
            SmtpMailer("127.0.0.1", smtp_server.port).send("msg-8", "nobody@example.org", "s", "b\n")
        assert smtp_server.handler.received == []

    def test_unreachable_server_is_a_delivery_error(self) -> None:
        with pytest.raises(MailDeliveryError):
            SmtpMailer("127.0.0.1", free_port(), timeout=2.0).send("m", "a@example.org", "s", "b\n")

    def test_login(self, smtp_server_with_auth: SmtpServer) -> None:
        mailer = SmtpMailer("127.0.0.1", smtp_server_with_auth.port, username="relay", password="s3cret")
        mailer.send("m", "a@example.org", "s", "b\n")
        assert smtp_server_with_auth.logins == [(b"relay", b"s3cret")]
        assert len(smtp_server_with_auth.handler.received) == 1

    def test_wrong_password_is_a_delivery_error_that_does_not_name_it(self, smtp_server_with_auth: SmtpServer) -> None:
        mailer = SmtpMailer("127.0.0.1", smtp_server_with_auth.port, username="relay", password="wrong-hunter2")
        with pytest.raises(MailDeliveryError) as caught:
            mailer.send("m", "a@example.org", "s", "b\n")
        assert "wrong-hunter2" not in str(caught.value)
        assert smtp_server_with_auth.handler.received == []

    def test_repr_redacts_the_password(self) -> None:
        mailer = SmtpMailer("mail.example", 587, starttls=True, username="relay", password="hunter2")
        assert "hunter2" not in repr(mailer)
        assert "relay" in repr(mailer)
        assert "***" in repr(mailer)


# --------------------------------------------------------------------------- mailer_from_url


class TestMailerFromUrl:
    @pytest.mark.parametrize("url", [None, "", "   "])
    def test_default_is_files_in_the_default_folder(self, tmp_path: Path, url: str | None) -> None:
        mailer = mailer_from_url(url, tmp_path / "outbox")
        assert isinstance(mailer, FileMailer)
        assert mailer.directory == tmp_path / "outbox"

    def test_file_url(self, tmp_path: Path) -> None:
        mailer = mailer_from_url(f"file://{tmp_path}/mail%20box", Path("unused"))
        assert isinstance(mailer, FileMailer)
        assert mailer.directory == tmp_path / "mail box"
        mailer.send("m", "a@example.org", "s", "b\n")
        assert (tmp_path / "mail box" / "m.eml").exists()

    def test_smtp_url(self) -> None:
        mailer = mailer_from_url("smtp://mail.example:2525", Path("unused"))
        assert isinstance(mailer, SmtpMailer)
        assert (mailer.host, mailer.port, mailer.starttls, mailer.username) == ("mail.example", 2525, False, None)

    def test_smtp_default_port(self) -> None:
        mailer = mailer_from_url("smtp://mail.example", Path("unused"))
        assert isinstance(mailer, SmtpMailer)
        assert mailer.port == 25

    def test_starttls_url_with_credentials(self) -> None:
        mailer = mailer_from_url("smtp+starttls://relay%40ccq:p%40ss%2Fw0rd@mail.example:587", Path("unused"))
        assert isinstance(mailer, SmtpMailer)
        assert (mailer.host, mailer.port, mailer.starttls, mailer.username) == ("mail.example", 587, True, "relay@ccq")
        assert mailer._password == "p@ss/w0rd"
        assert "p@ss/w0rd" not in repr(mailer)
        assert "p%40ss" not in repr(mailer)

    def test_starttls_default_port_is_submission(self) -> None:
        mailer = mailer_from_url("smtp+starttls://mail.example", Path("unused"))
        assert isinstance(mailer, SmtpMailer)
        assert (mailer.port, mailer.starttls, mailer.username) == (587, True, None)

    def test_smtp_url_is_usable(self, smtp_server: SmtpServer) -> None:
        mailer_from_url(f"smtp://127.0.0.1:{smtp_server.port}", Path("unused")).send("m", "a@example.org", "s", "b\n")
        assert len(smtp_server.handler.received) == 1

    @pytest.mark.parametrize(
        "url",
        [
            "http://u:hunter2@mail.example",
            "mailto:a@example.org",
            "/some/dir",
            "smtp://",
            "smtp://u:hunter2@mail.example:notaport",
            "smtp://u:hunter2@mail.example:99999",
            "smtp://u:hunter2@mail.example:25",
            "smtp+starttls://u:hunter2@mail.example:25/path",
            "smtp+starttls://u:hunter2@mail.example:25?x=1",
            "file://remote/dir",
            "file://",
        ],
    )
    def test_bad_urls_are_refused_without_the_password(self, url: str) -> None:
        with pytest.raises(ValueError) as caught:
            mailer_from_url(url, Path("unused"))
        message = str(caught.value)
        assert "hunter2" not in message
        assert "AUTHZ_MAIL_URL" in message

    def test_unsupported_scheme_names_the_accepted_forms(self) -> None:
        with pytest.raises(ValueError, match=r"file:///.*smtp://.*smtp\+starttls://"):
            mailer_from_url("http://mail.example", Path("unused"))


# --------------------------------------------------------------------------- OutboxRelay


@dataclass
class Row:
    message: OutboxMessage
    sent_at: datetime | None = None
    errors: list[str] = field(default_factory=list)
    retry_at: datetime | None = None


class MemoryOutbox:
    """The OutboxStore protocol over a dict, thread-safe like a database would be."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.lock = threading.Lock()
        self.fail_pending = 0  # raise from pending_outbox this many times
        self.fail_mark_sent = 0  # raise from mark_outbox_sent this many times (a crash after sending)

    def add(self, message_id: str, body: str = BODY_WITH_CODE, *, attempts: int = 0) -> None:
        with self.lock:
            message = OutboxMessage(message_id, f"{message_id}@example.org", f"subject {message_id}", body, attempts)
            self.rows[message_id] = Row(message)

    def pending_outbox(
        self, limit: int, *, now: datetime | None = None, give_up_seconds: float | None = None
    ) -> list[OutboxMessage]:
        with self.lock:
            if self.fail_pending:
                self.fail_pending -= 1
                raise RuntimeError("database unavailable")
            due = [
                row.message
                for row in self.rows.values()
                if row.sent_at is None and (row.retry_at is None or now is None or row.retry_at <= now)
            ]
            return due[:limit]

    def mark_outbox_sent(self, message_id: str, sent_at: datetime) -> None:
        with self.lock:
            if self.fail_mark_sent:
                self.fail_mark_sent -= 1
                raise RuntimeError("crash before commit")
            self.rows[message_id].sent_at = sent_at

    def mark_outbox_failed(self, message_id: str, error: str, retry_at: datetime | None = None) -> None:
        with self.lock:
            row = self.rows[message_id]
            row.errors.append(error)
            row.retry_at = retry_at
            row.message = replace(row.message, attempts=row.message.attempts + 1)

    def sent(self) -> set[str]:
        with self.lock:
            return {key for key, row in self.rows.items() if row.sent_at is not None}


class FailingMailer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or MailDeliveryError("relay said no")
        self.calls: list[str] = []

    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        self.calls.append(message_id)
        raise self.error


class RecordingMailer:
    def __init__(self, fail_ids: set[str] | None = None) -> None:
        self.fail_ids = fail_ids or set()
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        with self.lock:
            self.calls.append(message_id)
        if message_id in self.fail_ids:
            raise MailDeliveryError(f"cannot deliver {message_id}")


class TestOutboxRelay:
    def test_pending_messages_are_sent_once_and_marked(self, tmp_path: Path) -> None:
        store = MemoryOutbox()
        store.add("m-1")
        store.add("m-2")
        relay = OutboxRelay(store, FileMailer(tmp_path))

        assert relay.deliver_pending() == 2
        assert store.sent() == {"m-1", "m-2"}
        assert all(row.sent_at is not None and row.sent_at.tzinfo is not None for row in store.rows.values())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.eml", "m-2.eml"]
        message = parse((tmp_path / "m-1.eml").read_bytes())
        assert message["To"] == "m-1@example.org"
        assert text_of(message) == BODY_WITH_CODE

        assert relay.deliver_pending() == 0  # nothing left to send

    def test_failing_mailer_marks_failed_not_sent(self) -> None:
        store = MemoryOutbox()
        store.add("m-1")
        store.add("m-2")
        mailer = FailingMailer()
        relay = OutboxRelay(store, mailer)

        assert relay.deliver_pending() == 0
        assert mailer.calls == ["m-1", "m-2"]  # the first failure does not stop the batch
        assert store.sent() == set()
        assert store.rows["m-1"].errors == ["relay said no"]
        assert store.rows["m-1"].message.attempts == 1

    def test_os_error_is_recorded_too(self) -> None:
        store = MemoryOutbox()
        store.add("m-1")
        relay = OutboxRelay(store, FailingMailer(ConnectionRefusedError(111, "Connection refused")))
        assert relay.deliver_pending() == 0
        assert store.rows["m-1"].errors == ["ConnectionRefusedError: [Errno 111] Connection refused"]

    def test_one_failure_does_not_block_the_others(self) -> None:
        store = MemoryOutbox()
        for name in ("m-1", "m-2", "m-3"):
            store.add(name)
        relay = OutboxRelay(store, RecordingMailer(fail_ids={"m-2"}))
        assert relay.deliver_pending() == 2
        assert store.sent() == {"m-1", "m-3"}
        assert store.rows["m-2"].errors == ["cannot deliver m-2"]

    def test_retries_until_max_attempts_then_skips(self) -> None:
        store = MemoryOutbox()
        store.add("m-1")
        mailer = FailingMailer()
        relay = OutboxRelay(store, mailer, max_attempts=3, retry_initial=0.001, retry_max=0.001)
        for _ in range(5):
            relay.deliver_pending()
            time.sleep(0.005)
        assert mailer.calls == ["m-1"] * 3
        assert store.rows["m-1"].message.attempts == 3

    def test_a_failed_message_waits_out_a_doubling_backoff(self) -> None:
        store = MemoryOutbox()
        store.add("m-1")
        mailer = FailingMailer()
        relay = OutboxRelay(store, mailer, retry_initial=1.0, retry_max=60.0)
        relay.deliver_pending()
        relay.deliver_pending()  # at once: still waiting out its first pause
        assert mailer.calls == ["m-1"]
        retry_at = store.rows["m-1"].retry_at
        assert retry_at is not None and 0.85 < (retry_at - datetime.now(UTC)).total_seconds() <= 1.0
        pauses = [relay.backoff(attempts) for attempts in range(1, 10)]
        assert all(0.9 * 2 ** (n - 1) <= p <= 2 ** (n - 1) for n, p in enumerate(pauses[:5], start=1))
        assert max(pauses) <= 60.0 and pauses[-1] >= 54.0

    def test_log_lines_and_stored_errors_carry_no_address(self, caplog: pytest.LogCaptureFixture) -> None:
        assert redact_addresses("550 <jean.dupont@example.org>: no such user") == "550 <***@example.org>: no such user"
        store = MemoryOutbox()
        store.add("m-1")
        mailer = FailingMailer(MailDeliveryError("recipient m-1@example.org refused"))
        with caplog.at_level(logging.INFO, logger="authz.mail"):
            OutboxRelay(store, mailer).deliver_pending()
        assert "m-1@example.org" not in caplog.text + " ".join(store.rows["m-1"].errors)
        assert "***@example.org" in caplog.text

    def test_exhausted_message_is_skipped(self) -> None:
        store = MemoryOutbox()
        store.add("old", attempts=10)
        store.add("new")
        mailer = RecordingMailer()
        assert OutboxRelay(store, mailer, max_attempts=10).deliver_pending() == 1
        assert mailer.calls == ["new"]

    def test_batch_limits_one_pass(self) -> None:
        store = MemoryOutbox()
        for index in range(5):
            store.add(f"m-{index}")
        relay = OutboxRelay(store, RecordingMailer(), batch=2)
        assert relay.deliver_pending() == 2
        assert relay.deliver_pending() == 2
        assert relay.deliver_pending() == 1

    def test_crash_before_marking_resends_to_the_same_file(self, tmp_path: Path) -> None:
        # The mailer returned, then the process died before the row was marked: the restart resends,
        # and the .eml of the same id is overwritten rather than duplicated.
        store = MemoryOutbox()
        store.add("m-1")
        store.fail_mark_sent = 1
        with pytest.raises(RuntimeError):
            OutboxRelay(store, FileMailer(tmp_path)).deliver_pending()
        assert store.sent() == set()

        assert OutboxRelay(store, FileMailer(tmp_path)).deliver_pending() == 1
        assert store.sent() == {"m-1"}
        assert [p.name for p in tmp_path.iterdir()] == ["m-1.eml"]

    def test_bodies_are_never_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        store = MemoryOutbox()
        store.add("ok")
        store.add("bad")
        caplog.set_level(logging.DEBUG, logger="authz.mail")
        OutboxRelay(store, RecordingMailer(fail_ids={"bad"})).deliver_pending()
        logged = "\n".join(record.getMessage() for record in caplog.records)
        # Ids and the recipient's domain only: the address itself is personal data.
        assert "ok" in logged and "bad" in logged and "***@example.org" in logged
        assert "bad@example.org" not in logged and "ok@example.org" not in logged
        assert "ABCD-EFGH-JKLM-NPQR" not in logged
        assert "Code de liaison" not in logged

    def test_invalid_settings(self) -> None:
        with pytest.raises(ValueError):
            OutboxRelay(MemoryOutbox(), RecordingMailer(), interval=0)
        with pytest.raises(ValueError):
            OutboxRelay(MemoryOutbox(), RecordingMailer(), batch=0)

    def test_background_thread_sends_on_start_and_on_wake(self, tmp_path: Path) -> None:
        store = MemoryOutbox()
        store.add("before-start")
        # A long interval: anything sent quickly after start() came from the first pass or from wake().
        relay = OutboxRelay(store, FileMailer(tmp_path), interval=60.0)
        relay.start()
        try:
            assert wait_for(lambda: store.sent() == {"before-start"})
            store.add("after-commit")
            relay.wake()
            assert wait_for(lambda: store.sent() == {"before-start", "after-commit"})
            assert (tmp_path / "after-commit.eml").exists()
        finally:
            relay.stop()

    def test_background_thread_ticks_on_its_own(self) -> None:
        store = MemoryOutbox()
        relay = OutboxRelay(store, RecordingMailer(), interval=0.05)
        relay.start()
        try:
            store.add("m-1")  # no wake(): the next tick picks it up
            assert wait_for(lambda: store.sent() == {"m-1"})
        finally:
            relay.stop()

    def test_background_thread_survives_a_store_error(self) -> None:
        store = MemoryOutbox()
        store.fail_pending = 1
        store.add("m-1")
        relay = OutboxRelay(store, RecordingMailer(), interval=60.0)
        relay.start()
        try:
            assert wait_for(lambda: store.fail_pending == 0)
            relay.wake()
            assert wait_for(lambda: store.sent() == {"m-1"})
        finally:
            relay.stop()

    def test_stop_joins_and_nothing_is_sent_afterwards(self) -> None:
        store = MemoryOutbox()
        mailer = RecordingMailer()
        relay = OutboxRelay(store, mailer, interval=0.05)
        relay.start()
        relay.start()  # a second start is a no-op, not a second thread
        relay.stop(timeout=5.0)
        assert not any(t.name == "authz-outbox-relay" and t.is_alive() for t in threading.enumerate())
        store.add("late")
        relay.wake()
        time.sleep(0.2)
        assert mailer.calls == []
        relay.stop()  # stopping twice is harmless

    def test_restart_after_stop(self) -> None:
        store = MemoryOutbox()
        relay = OutboxRelay(store, RecordingMailer(), interval=60.0)
        relay.start()
        relay.stop()
        store.add("m-1")
        relay.start()
        try:
            assert wait_for(lambda: store.sent() == {"m-1"})
        finally:
            relay.stop()
