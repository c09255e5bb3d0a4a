"""examples/send.c, the smallest libpigeon program, against three servers:
the real pigeond, Python's aiosmtpd (which records what it receives byte for
byte) and Postfix's smtp-sink with injected failures."""

import pathlib
import subprocess

import pytest

from conftest import PIGEOND

SEND = str(pathlib.Path(PIGEOND).parent / "send")

MESSAGE = (b"From: a@example.org\n"
           b"To: somebody@localhost\n"
           b"Subject: from the example\n"
           b"\n"
           b".a line that starts with a dot\n"
           b"last line\n")


def send(port, sender, rcpts, content, *flags):
    return subprocess.run([SEND, *flags, "127.0.0.1", str(port), sender, ",".join(rcpts)],
                          input=content, capture_output=True, timeout=30)


def test_example_sends_to_pigeond_and_the_message_arrives_intact(pigeond):
    r = send(pigeond.port, "a@example.org", ["somebody@localhost", "other@localhost"], MESSAGE)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("somebody@localhost 250 2.0.0 Ok: queued as ")
    assert lines[1].startswith("other@localhost 250 2.0.0 Ok: queued as ")
    for user in ("somebody", "other"):
        msgs = pigeond.wait_for_messages(user, 1)
        assert len(msgs) == 1
        assert msgs[0].endswith(MESSAGE.replace(b"\n", b"\r\n"))


def test_example_reports_each_recipient_and_exits_partial(make_pigeond):
    d = make_pigeond(trusted="192.0.2.0/24")  # so a remote recipient is refused
    r = send(d.port, "a@example.org", ["somebody@localhost", "x@elsewhere.example"], MESSAGE)
    assert r.returncode == 1  # PIGEON_PARTIAL
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("somebody@localhost 250 ")
    assert lines[1] == ("x@elsewhere.example 554 5.7.1 <x@elsewhere.example>: "
                        "Relay access denied")


def test_example_verbose_shows_the_conversation_without_the_content(pigeond):
    r = send(pigeond.port, "", ["somebody@localhost"], MESSAGE, "-v")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "C: MAIL FROM:<>" in err and "C: RCPT TO:<somebody@localhost>" in err
    assert "S: 250" in err and "octets of message content" in err
    assert "a line that starts with a dot" not in err


def test_example_to_aiosmtpd_arrives_byte_for_byte(aiosmtpd_server):
    r = send(aiosmtpd_server.port, "a@example.org", ["b@example.org"], MESSAGE)
    assert r.returncode == 0, r.stderr
    assert aiosmtpd_server.event.wait(5)
    mail_from, rcpt, content, _ = aiosmtpd_server.got[0]
    assert (mail_from, rcpt) == ("a@example.org", ["b@example.org"])
    assert content == MESSAGE.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("options, status, code", [
    ((), 0, "250"),
    (("-r", "rcpt"), 2, "450"),   # temporary: PIGEON_TEMPFAIL
    (("-f", "rcpt"), 3, "500"),   # permanent: PIGEON_PERMFAIL
    (("-f", "."), 3, "500"),
])
def test_example_against_smtp_sink_with_injected_replies(smtp_sink, options, status, code):
    port = smtp_sink(*options)
    r = send(port, "a@example.org", ["b@example.org"], MESSAGE)
    assert r.returncode == status, (r.stdout, r.stderr)
    assert r.stdout.decode().split()[:2] == ["b@example.org", code]
