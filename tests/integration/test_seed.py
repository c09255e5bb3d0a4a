"""The seed: the tutorial's session typed by hand, with bare LF line endings."""

from conftest import SmtpConn

SEED_COMMANDS = [
    (b"HELO oleg\n", 250),
    (b"MAIL FROM: oleg@vbip.com\n", 250),
    (b"RCPT TO: somebody@localhost\n", 250),
    (b"RCPT TO: other@localhost\n", 250),
    (b"DATA\n", 354),
]
SEED_BODY = [
    b"Subject: My first e-mail message.\n",
    b"\n",
    b" First line of a message.\n",
    b" Second line.\n",
    b".\n",
]
STORED_BODY = (b"Subject: My first e-mail message.\r\n"
               b"\r\n"
               b" First line of a message.\r\n"
               b" Second line.\r\n")


def test_seed_session_from_trusted_client_is_delivered_with_crlf(pigeond):
    c = SmtpConn(pigeond.port)
    assert c.reply()[0] == 220
    for line, code in SEED_COMMANDS:
        assert c.cmd(line)[0] == code, line
    for line in SEED_BODY:
        c.send(line)
    code, lines = c.reply()
    assert code == 250
    queue_id = lines[-1].split()[-1].decode()
    assert lines[-1].startswith(b"250 ") and queue_id.isalnum() and len(queue_id) == 14
    assert c.cmd(b"QUIT\n")[0] == 221
    assert c.closed()

    for user in ("somebody", "other"):
        msgs = pigeond.wait_for_messages(user, 1)
        assert len(msgs) == 1, pigeond.log()
        msg = msgs[0]
        head, _, body = msg.partition(b"\r\n\r\n")
        assert msg.startswith(b"Return-Path: <oleg@vbip.com>\r\nReceived: from oleg ([127.0.0.1])\r\n")
        assert ("id " + queue_id).encode() in head
        assert msg.endswith(STORED_BODY)
        assert b"\n" not in msg.replace(b"\r\n", b"")  # no bare LF anywhere


def test_seed_session_from_untrusted_client_gets_bare_lf_rejection(make_pigeond):
    d = make_pigeond(trusted="192.0.2.0/24")  # loopback is not trusted here
    c = SmtpConn(d.port)
    assert c.reply()[0] == 220
    for line, _ in SEED_COMMANDS:
        code, lines = c.cmd(line)
        assert code == 500 and b"5.5.2" not in lines[0]  # HELO never negotiated ESMTP
        assert b"bare LF" in lines[0]
    for line in SEED_BODY:
        code, lines = c.cmd(line)
        assert code == 500 and b"bare LF" in lines[0]
    assert c.cmd(b"QUIT\n")[0] == 221
    assert d.messages("somebody") == [] and d.messages("other") == []
    assert not (d.dir / "var" / "mail" / "somebody").exists()
