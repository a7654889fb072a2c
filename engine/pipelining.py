"""SMTP PIPELINING (RFC 2920): one message in two round trips instead of 2 + one per recipient.

`sendmail` has smtplib's `SMTP.sendmail` contract (the refused recipients, or the same
exceptions for the same replies) but, when the server offers PIPELINING, writes MAIL FROM,
every RCPT TO and DATA at once and then reads their replies in order; the message follows the
354. Against a server without the extension it is smtplib's own `sendmail`.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
from collections.abc import Callable, Sequence

__all__ = ["pipelined", "sendmail"]

MAX_PIPELINED_RECIPIENTS = 100
"""More recipients than this go in lockstep: a pipelined group must fit the TCP send window
(RFC 2920, section 3.1), as the client reads no reply while it writes one."""
_LEADING_DOT = re.compile(rb"(?m)^\.")
_CRLF = b"\r\n"


def pipelined(conn: smtplib.SMTP) -> bool:
    """Whether the (greeted) connection may pipeline: the server announced PIPELINING."""
    return bool(conn.does_esmtp and conn.has_extn("pipelining"))


def sendmail(
    conn: smtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    options: Sequence[str] = (),
    while_waiting: Sequence[Callable[[], object]] = (),
) -> dict[str, tuple[int, bytes]]:
    """Send DATA (bytes with CRLF line ends) from SENDER to RECIPIENTS: {refused recipient: reply}.

    Raises as `smtplib.SMTP.sendmail` does: SMTPSenderRefused, SMTPRecipientsRefused (all
    refused, or a 421 among them), SMTPDataError; after a 421 the connection is closed, after
    another refusal it is reset (RSET) and stays usable. When pipelining, the callables in
    WHILE_WAITING (which must not raise) run once the message is written, while the server
    takes it; without the extension they are not run.
    """
    conn.ehlo_or_helo_if_needed()
    if not pipelined(conn) or len(recipients) > MAX_PIPELINED_RECIPIENTS:
        return conn.sendmail(sender, list(recipients), data, mail_options=list(options))
    mail_options = [f"size={len(data)}"] if conn.has_extn("size") else []
    mail_options += options
    if any(o.lower() == "smtputf8" for o in mail_options):
        if not conn.has_extn("smtputf8"):  # as smtplib's mail() refuses it
            raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
        conn.command_encoding = "utf-8"
    commands = [
        f"mail FROM:{smtplib.quoteaddr(sender)}{''.join(' ' + o for o in mail_options)}",
        *(f"rcpt TO:{smtplib.quoteaddr(r)}" for r in recipients),
        "data",
    ]
    if any("\r" in c or "\n" in c for c in commands):  # smtplib's putcmd refuses these too
        raise ValueError("command and arguments contain prohibited newline characters")
    conn.send("".join(c + "\r\n" for c in commands))

    code, reply = conn.getreply()
    if code == 421:
        conn.close()
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    sender_refused = None if code == 250 else (code, reply)
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in recipients:
        code, reply = conn.getreply()
        if code not in (250, 251):
            refused[recipient] = (code, reply)
        if code == 421:
            conn.close()
            if sender_refused is not None:
                raise smtplib.SMTPSenderRefused(*sender_refused, sender)
            raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = conn.getreply()  # DATA
    failed = sender_refused is not None or len(refused) == len(recipients)
    if code == 354 and failed:  # the server waits for data of a transaction that failed: end it empty
        conn.send(b"." + _CRLF)
        code, reply = conn.getreply()
    elif code == 354:
        body = _LEADING_DOT.sub(b"..", data)
        if not body.endswith(_CRLF):
            body += _CRLF
        conn.send(body + b"." + _CRLF)
        for work in while_waiting:
            work()
        code, reply = conn.getreply()
        if code == 250:
            return refused
    if code == 421:
        conn.close()
    else:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            conn.rset()
    if sender_refused is not None:
        raise smtplib.SMTPSenderRefused(*sender_refused, sender)
    if failed:
        raise smtplib.SMTPRecipientsRefused(refused)
    raise smtplib.SMTPDataError(code, reply)
