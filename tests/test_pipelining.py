"""The pipelined SMTP conversation (RFC 2920), against a scripted server: what is written, what is raised.

tests/test_delivery.py runs every SMTP test against a real aiosmtpd both with and without PIPELINING
announced; these cover the replies a well-behaved aiosmtpd never gives (354 after every recipient was
refused, 421 in the middle of a pipeline).
"""

from __future__ import annotations

import smtplib

import pytest

from forewarn.engine import pipelining


class Scripted(smtplib.SMTP):
    """An smtplib connection whose server is a list of replies; what the client writes is recorded."""

    def __init__(self, replies: list[tuple[int, bytes]], extensions: tuple[str, ...] = ("pipelining",)) -> None:
        super().__init__()  # not connected
        self.replies = list(replies)
        self.written: list[bytes] = []
        self.does_esmtp = True
        self.esmtp_features = {name: "" for name in extensions}
        self.ehlo_resp = b"ok"
        self.closed = False

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        self.written.append(s.encode(self.command_encoding) if isinstance(s, str) else s)

    def getreply(self) -> tuple[int, bytes]:
        return self.replies.pop(0)

    def close(self) -> None:
        self.closed = True


OK = (250, b"OK")
GO = (354, b"go ahead")
DATA = b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n"


def test_commands_are_written_at_once_then_the_message() -> None:
    conn = Scripted([OK, OK, OK, GO, (250, b"queued")])
    refused = pipelining.sendmail(conn, "a@x.example", ["b@y.example", "c@y.example"], DATA)
    assert refused == {}
    assert conn.written == [
        b"mail FROM:<a@x.example>\r\nrcpt TO:<b@y.example>\r\nrcpt TO:<c@y.example>\r\ndata\r\n",
        b"Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\n",  # dot-stuffed, then the end of data
    ]
    assert conn.replies == []


def test_size_and_smtputf8_options_go_on_mail_from() -> None:
    conn = Scripted([OK, OK, GO, OK], extensions=("pipelining", "size", "smtputf8"))
    pipelining.sendmail(conn, "ä@x.example", ["b@y.example"], b"x", ["SMTPUTF8"])
    assert conn.written[0].startswith("mail FROM:<ä@x.example> size=1 SMTPUTF8\r\n".encode())
    assert conn.written[1] == b"x\r\n.\r\n"  # a final CRLF is added


def test_without_the_extension_it_is_smtplibs_conversation() -> None:
    conn = Scripted([OK, OK, GO, OK], extensions=())
    pipelining.sendmail(conn, "a@x.example", ["b@y.example"], b"x\r\n")
    assert conn.written == [b"mail FROM:<a@x.example>\r\n", b"rcpt TO:<b@y.example>\r\n", b"data\r\n", b"x\r\n.\r\n"]


def test_some_recipients_refused_are_returned_and_the_message_sent() -> None:
    conn = Scripted([OK, (550, b"no such user"), OK, GO, OK])
    refused = pipelining.sendmail(conn, "a@x.example", ["b@y.example", "c@y.example"], DATA)
    assert refused == {"b@y.example": (550, b"no such user")}
    assert len(conn.written) == 2


def test_every_recipient_refused_and_354_anyway_ends_the_empty_transaction() -> None:
    conn = Scripted([OK, (550, b"no"), GO, (554, b"no valid recipients"), OK])  # last: RSET
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        pipelining.sendmail(conn, "a@x.example", ["b@y.example"], DATA)
    assert info.value.recipients == {"b@y.example": (550, b"no")}
    assert conn.written[1:] == [b".\r\n", b"rset\r\n"]  # never the message
    assert not conn.closed


def test_sender_refused_is_raised_after_reading_every_reply() -> None:
    conn = Scripted([(553, b"bad sender"), (503, b"need MAIL"), (503, b"need RCPT"), OK])  # last: RSET
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        pipelining.sendmail(conn, "a@x.example", ["b@y.example"], DATA)
    assert (info.value.smtp_code, info.value.sender) == (553, "a@x.example")
    assert conn.replies == []
    assert conn.written[-1] == b"rset\r\n"


def test_data_refused_after_the_message_resets() -> None:
    conn = Scripted([OK, OK, GO, (451, b"try later"), OK])
    with pytest.raises(smtplib.SMTPDataError) as info:
        pipelining.sendmail(conn, "a@x.example", ["b@y.example"], DATA)
    assert info.value.smtp_code == 451
    assert conn.written[-1] == b"rset\r\n"


@pytest.mark.parametrize(
    ("replies", "error"),
    [
        ([(421, b"closing")], smtplib.SMTPSenderRefused),
        ([OK, (421, b"closing")], smtplib.SMTPRecipientsRefused),
        ([OK, OK, (421, b"closing")], smtplib.SMTPDataError),
        ([OK, OK, GO, (421, b"closing")], smtplib.SMTPDataError),
    ],
    ids=["mail", "rcpt", "data", "end-of-data"],
)
def test_421_closes_the_connection_without_reading_on(
    replies: list[tuple[int, bytes]], error: type[Exception]
) -> None:
    conn = Scripted(replies)
    with pytest.raises(error):
        pipelining.sendmail(conn, "a@x.example", ["b@y.example"], DATA)
    assert conn.closed
    assert conn.replies == []


def test_a_newline_in_an_address_cannot_inject_a_command() -> None:
    conn = Scripted([OK, OK, GO, OK])
    pipelining.sendmail(conn, "a@x.example", ["b@y.example\r\nRCPT TO:<evil@z.example>"], DATA)
    assert conn.written[0] == b"mail FROM:<a@x.example>\r\nrcpt TO:<b@y.example>\r\ndata\r\n"


def test_newlines_in_options_are_refused_before_anything_is_written() -> None:
    conn = Scripted([])
    with pytest.raises(ValueError, match="newline"):
        pipelining.sendmail(conn, "a@x.example", ["b@y.example"], DATA, ["BODY=8BITMIME\r\nRSET"])
    assert conn.written == []


def test_smtputf8_without_the_extension_is_refused_as_smtplib_does() -> None:
    conn = Scripted([])
    with pytest.raises(smtplib.SMTPNotSupportedError):
        pipelining.sendmail(conn, "ä@x.example", ["b@y.example"], DATA, ["SMTPUTF8"])
    assert conn.written == []


def test_a_421_after_a_refused_sender_reports_the_sender() -> None:
    conn = Scripted([(553, b"bad sender"), (421, b"closing")])
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        pipelining.sendmail(conn, "a@x.example", ["b@y.example"], DATA)
    assert info.value.smtp_code == 553
    assert conn.closed


def test_many_recipients_go_in_lockstep() -> None:
    many = [f"r{i}@y.example" for i in range(pipelining.MAX_PIPELINED_RECIPIENTS + 1)]
    conn = Scripted([OK, *([OK] * len(many)), GO, OK])
    assert pipelining.sendmail(conn, "a@x.example", many, DATA) == {}
    assert len(conn.written) == len(many) + 3  # one write per command, then the message
