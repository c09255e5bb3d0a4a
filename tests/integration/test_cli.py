"""The pigeon command: send, sendmail, talk and queue, run as a user would.

Against the real pigeond (what lands in the Maildir is checked, attachments
decoded back with Python's email package), against Python's aiosmtpd (which
records the envelope and the content byte for byte, and has no CHUNKING, so
the DATA path is taken), and against Postfix's smtp-sink, whose -r/-f/-q/-Q
options inject the 4xx, 5xx and dropped connections the exit codes are for.
pigeon talk is driven in a pseudo-terminal with pexpect, and from a pipe.
"""

import email
import email.header
import email.policy
import email.utils
import os
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import PIGEOND, free_port

try:
    import pexpect
except ImportError:  # scripts/deps.sh installs python3-pexpect
    pexpect = None

PIGEON = os.environ.get("PIGEON") or str(pathlib.Path(PIGEOND).parent / "pigeon")
UNTRUSTED = "192.0.2.0/24"  # loopback is not in it

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_NOUSER, EX_NOHOST = 64, 65, 66, 67, 68
EX_UNAVAILABLE, EX_TEMPFAIL, EX_PROTOCOL, EX_NOPERM, EX_CONFIG = 69, 75, 76, 77, 78


def pigeon(*args, input=None, env=None, cwd=None, program=None, timeout=30):
    """Run pigeon (or the sendmail symlink); CompletedProcess with bytes output."""
    full_env = dict(os.environ)
    full_env.pop("PIGEON_SERVER", None)
    full_env.update(env or {})
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run([program or PIGEON, *args], input=input, capture_output=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def server(d):
    return "127.0.0.1:%d" % d.port


def parse(msg):
    return email.message_from_bytes(msg, policy=email.policy.default)


def closed_port():
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture
def home(tmp_path):
    """A home directory for dead.letter and the talk history."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def sendmail(tmp_path):
    """The path of a "sendmail" symlink to pigeon (argv[0] decides the mode)."""
    link = tmp_path / "bin" / "sendmail"
    link.parent.mkdir()
    link.symlink_to(PIGEON)
    return str(link)


# ---- pigeon send, against pigeond --------------------------------------------------------

def test_send_delivers_message_with_generated_fields(pigeond):
    r = pigeon("send", "--server", server(pigeond), "--from", "oleg@vbip.com",
               "--to", "somebody@localhost", "--cc", "other@localhost",
               "--subject", "Hello", "--body", "Hi there.")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert re.fullmatch(r"somebody@localhost: 250 2\.0\.0 Ok: queued as [0-9A-Z]{14}", lines[0])
    assert re.fullmatch(r"other@localhost: 250 2\.0\.0 Ok: queued as [0-9A-Z]{14}", lines[1])
    for user in ("somebody", "other"):
        msgs = pigeond.wait_for_messages(user, 1)
        assert len(msgs) == 1, pigeond.log()
        m = parse(msgs[0])
        assert m["Return-Path"] == "<oleg@vbip.com>"
        assert m["From"] == "oleg@vbip.com"
        assert m["To"] == "somebody@localhost"
        assert m["Cc"] == "other@localhost"
        assert m["Subject"] == "Hello"
        assert email.utils.parsedate_to_datetime(m["Date"]).tzinfo is not None
        assert re.fullmatch(r"<[^@<>\s]+@[^@<>\s]+>", m["Message-ID"])
        assert msgs[0].endswith(b"\r\n\r\nHi there.\r\n")


def test_send_date_is_rfc5322_format(pigeond):
    r = pigeon("send", "-s", server(pigeond), "-t", "somebody@localhost", "-B", "x")
    assert r.returncode == 0, r.stderr
    msg = pigeond.wait_for_messages("somebody", 1)[0]
    date = re.search(rb"\r\nDate: ([^\r\n]*)\r\n", msg).group(1).decode()
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                        r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}", date)


def test_send_attachments_decode_to_the_original_bytes(pigeond, tmp_path):
    binary = os.urandom(5000) + b"\r\n--=_pigeon_\x00"
    (tmp_path / "data.bin").write_bytes(binary)
    text = "Zeile eins\nline two\n".encode()
    (tmp_path / "notes.txt").write_bytes(text)
    odd = tmp_path / "résumé final.pdf"
    odd.write_bytes(b"%PDF-1.4 not really")
    r = pigeon("send", "-s", server(pigeond), "--to", "somebody@localhost",
               "--subject", "Grüße aus Köln, ein ziemlich langer Betreff mit Umlauten äöü",
               "--body", "See the files.", "--attach", str(tmp_path / "data.bin"),
               "--attach", str(tmp_path / "notes.txt"), "--attach", str(odd))
    assert r.returncode == 0, r.stderr
    raw = pigeond.wait_for_messages("somebody", 1)[0]
    m = parse(raw)
    assert m["Subject"] == "Grüße aus Köln, ein ziemlich langer Betreff mit Umlauten äöü"
    assert m.get_content_type() == "multipart/mixed"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "application/octet-stream", "text/plain", "application/pdf"]
    assert parts[0].get_content().replace("\r\n", "\n") == "See the files.\n"
    assert parts[1].get_filename() == "data.bin"
    assert parts[1].get_payload(decode=True) == binary
    assert parts[2].get_filename() == "notes.txt"
    assert parts[2].get_payload(decode=True) == text
    assert parts[3].get_filename() == "résumé final.pdf"
    assert parts[3].get_payload(decode=True) == b"%PDF-1.4 not really"
    for p in parts[1:]:
        assert p["Content-Transfer-Encoding"] == "base64"
        assert p.get_content_disposition() == "attachment"
    # The RFC 2047 forms: a Subject of encoded-words, the file name as one too.
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?UTF-8?B?" in head
    for line in head.split("\r\n"):
        if "=?UTF-8?" in line:
            assert len(line) <= 76, line  # RFC 2047 §2
    decoded = email.header.decode_header(re.findall(
        r'filename="(=\?UTF-8\?B\?[^"]*)"', raw.decode())[0])
    assert b"".join(part for part, _ in decoded).decode() == "résumé final.pdf"
    # Base64 in lines of 76 characters at most (RFC 2045 §6.8), and the
    # boundary is in none of the parts.
    boundary = m.get_boundary()
    assert boundary.encode() not in binary
    body = raw.split(b"\r\n\r\n", 1)[1]
    for line in body.split(b"\r\n"):
        assert len(line) <= 76 or line.startswith(b"--"), line


def test_send_file_with_its_own_fields_keeps_them(pigeond, tmp_path):
    f = tmp_path / "letter.txt"
    f.write_bytes(b"From: Oleg <oleg@vbip.com>\nTo: Somebody <somebody@localhost>\n"
                  b"Subject: From the file\n\nBody from the file.\n")
    r = pigeon("send", "-s", server(pigeond), "--to", "somebody@localhost", "--file", str(f))
    assert r.returncode == 0, r.stderr
    raw = pigeond.wait_for_messages("somebody", 1)[0]
    m = parse(raw)
    assert m.get_all("To") == ["Somebody <somebody@localhost>"]
    assert m.get_all("Subject") == ["From the file"]
    assert m["Return-Path"] == "<oleg@vbip.com>"  # the sender defaults to the From: address
    assert m["Date"] and m["Message-ID"]
    assert raw.endswith(b"\r\n\r\nBody from the file.\r\n")


def test_send_header_option_replaces_the_files_field(pigeond, tmp_path):
    f = tmp_path / "letter.txt"
    f.write_bytes(b"Subject: old\nX-Keep: yes\n\nbody\n")
    r = pigeon("send", "-s", server(pigeond), "--to", "somebody@localhost", "--file", str(f),
               "--header", "Subject: new", "-H", "X-Custom: 42")
    assert r.returncode == 0, r.stderr
    m = parse(pigeond.wait_for_messages("somebody", 1)[0])
    assert m.get_all("Subject") == ["new"]
    assert m["X-Custom"] == "42" and m["X-Keep"] == "yes"


def test_send_reads_a_plain_body_from_stdin(pigeond):
    r = pigeon("send", "-s", server(pigeond), "--to", "somebody@localhost",
               input=b"Just a body.\nSecond line.\n")
    assert r.returncode == 0, r.stderr
    raw = pigeond.wait_for_messages("somebody", 1)[0]
    assert raw.endswith(b"\r\n\r\nJust a body.\r\nSecond line.\r\n")


def test_send_labels_8bit_text_as_utf8(pigeond):
    r = pigeon("send", "-s", server(pigeond), "--to", "somebody@localhost",
               "--body", "Ça va? Grüße.")
    assert r.returncode == 0, r.stderr
    raw = pigeond.wait_for_messages("somebody", 1)[0]
    m = parse(raw)
    assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"
    assert m.get_content().replace("\r\n", "\n") == "Ça va? Grüße.\n"


def test_send_removes_bcc_and_sends_to_bcc_recipients(pigeond, tmp_path):
    f = tmp_path / "m.txt"
    f.write_bytes(b"Subject: s\nBcc: secret@localhost\n\nbody\n")
    r = pigeon("send", "-s", server(pigeond), "--to", "somebody@localhost",
               "--bcc", "hidden@localhost", "--file", str(f))
    assert r.returncode == 0, r.stderr
    for user in ("somebody", "hidden"):
        raw = pigeond.wait_for_messages(user, 1)[0]
        assert b"Bcc" not in raw and b"secret" not in raw
    assert b"hidden@localhost" not in pigeond.messages("somebody")[0]


def test_send_to_ipv6_server_in_brackets(make_pigeond):
    d = make_pigeond(listen=["127.0.0.1", "::1"])  # the fixture checks 127.0.0.1
    r = pigeon("send", "--server", "[::1]:%d" % d.port, "--to", "somebody@localhost",
               "--body", "over IPv6")
    assert r.returncode == 0, r.stderr
    assert d.wait_for_messages("somebody", 1)[0].endswith(b"over IPv6\r\n")


def test_send_dry_run_prints_envelope_and_message_and_sends_nothing():
    port = closed_port()
    r = pigeon("send", "--dry-run", "--server", "127.0.0.1:%d" % port, "--from", "a@example.org",
               "--to", "b@example.org", "--to", "c@example.org", "--subject", "Dry",
               "--body", "nothing sent")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    head, message = out.split("\n\n", 1)
    assert head.splitlines() == ["server: 127.0.0.1 port %d" % port,
                                 "envelope sender: <a@example.org>",
                                 "envelope recipient: <b@example.org>",
                                 "envelope recipient: <c@example.org>"]
    m = email.message_from_string(message, policy=email.policy.default)
    assert m["To"] == "b@example.org, c@example.org"
    assert m["Subject"] == "Dry" and m["Date"] and m["Message-ID"]
    assert m.get_content() == "nothing sent\n"


def test_send_verbose_prints_the_transaction(pigeond):
    r = pigeon("send", "-v", "-s", server(pigeond), "--from", "oleg@vbip.com",
               "--to", "somebody@localhost", "--body", "x")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "S: 220 pigeon.test ESMTP Pigeon"
    assert any(l.startswith("C: EHLO ") for l in lines)
    assert "S: 250-PIPELINING" in lines
    assert any(l.startswith("C: MAIL FROM:<oleg@vbip.com>") for l in lines)
    assert "C: RCPT TO:<somebody@localhost>" in lines
    assert any(l.startswith("C: BDAT ") for l in lines)  # pigeond offers CHUNKING
    assert "C: QUIT" in lines
    assert any(l.startswith("S: 221 ") for l in lines)
    assert lines[-1].startswith("somebody@localhost: 250 2.0.0 Ok: queued as ")


def test_send_unknown_host_exits_nohost():
    r = pigeon("send", "--server", "no-such-host.invalid:25", "--to", "a@example.org",
               "--body", "x")
    assert r.returncode == EX_NOHOST, r.stderr
    assert b"no-such-host.invalid" in r.stderr


def test_send_connection_refused_exits_nohost():
    r = pigeon("send", "--server", "127.0.0.1:%d" % closed_port(), "--to", "a@example.org",
               "--body", "x")
    assert r.returncode == EX_NOHOST, r.stderr
    assert b"refused" in r.stderr


def test_send_refused_recipient_from_untrusted_client_exits_nouser(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    r = pigeon("send", "-s", server(d), "--to", "x@example.org", "--body", "x")
    assert r.returncode == EX_NOUSER, r.stderr
    assert r.stdout.decode().splitlines() == [
        "x@example.org: refused: 554 5.7.1 <x@example.org>: Relay access denied"]


def test_send_partly_refused_exits_nouser_and_delivers_the_rest(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    r = pigeon("send", "-s", server(d), "--to", "somebody@localhost", "--to", "x@example.org",
               "--body", "half")
    assert r.returncode == EX_NOUSER, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("somebody@localhost: 250 2.0.0 Ok: queued as ")
    assert lines[1].startswith("x@example.org: refused: 554 5.7.1")
    assert d.wait_for_messages("somebody", 1)[0].endswith(b"half\r\n")


@pytest.mark.parametrize("args", [
    [],                                              # no recipients
    ["--to", "a@b.example", "--header", "no colon"],
    ["--to", "a@b.example", "--header", "X-A: 1\nX-B: 2"],  # no field smuggled in
    ["--to", "a@b.example", "--server", "[::1"],
    ["--to", "a@b.example", "stray-argument"],
    ["--to", "a@b.example", "--body", "x", "--file", "/dev/null"],
    ["--to", "a@b.example", "--timeout", "soon"],
    ["--to", ""],
    ["--no-such-option"],
])
def test_send_bad_arguments_exit_usage(args):
    r = pigeon("send", "--server", "127.0.0.1:%d" % closed_port(), "--body", "x", *args)
    assert r.returncode == EX_USAGE, (args, r.stderr)


def test_send_malformed_address_exits_usage():
    r = pigeon("send", "--server", "127.0.0.1:%d" % closed_port(), "--to", "a@@b", "--body", "x")
    assert r.returncode == EX_USAGE, r.stderr


@pytest.mark.parametrize("option", ["--file", "--attach"])
def test_send_unreadable_file_exits_noinput(option, tmp_path):
    r = pigeon("send", "--server", "127.0.0.1:%d" % closed_port(), "--to", "a@b.example",
               option, str(tmp_path / "missing"), input=b"x\n")
    assert r.returncode == EX_NOINPUT, r.stderr
    assert b"missing" in r.stderr


# ---- pigeon sendmail, against pigeond ------------------------------------------------------

T_MESSAGE = (b"From: Oleg <oleg@vbip.com>\n"
             b"To: \"Doe, John\" <somebody@localhost>,\n"
             b"    (a comment) other@localhost\n"
             b"Cc: friends: third@localhost;, undisclosed-recipients:;\n"
             b"Bcc: hidden@localhost\n"
             b"Subject: -t test\n"
             b"\n"
             b"body\n")


def test_sendmail_t_takes_recipients_from_fields_and_removes_bcc(pigeond, sendmail, home):
    r = pigeon("-t", "-i", program=sendmail, input=T_MESSAGE,
               env={"PIGEON_SERVER": server(pigeond), "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""  # quiet on success, as sendmail is
    for user in ("somebody", "other", "third", "hidden"):
        msgs = pigeond.wait_for_messages(user, 1)
        assert len(msgs) == 1, (user, pigeond.log())
        head, body = msgs[0].split(b"\r\n\r\n", 1)
        assert b"Bcc" not in head and b"hidden@localhost" not in head.split(b"From: ")[1]
        m = parse(msgs[0])
        assert m["Subject"] == "-t test" and m["Date"] and m["Message-ID"]
        assert body == b"body\r\n"
    assert not (home / "dead.letter").exists()


def test_sendmail_with_argument_recipients_builds_from_with_full_name(pigeond, sendmail, home):
    r = pigeon("-F", "Oleg Example", "-f", "oleg@vbip.com", "somebody@localhost",
               program=sendmail, input=b"Subject: args\n\nhello\n",
               env={"PIGEON_SERVER": server(pigeond), "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    m = parse(pigeond.wait_for_messages("somebody", 1)[0])
    assert m["Return-Path"] == "<oleg@vbip.com>"
    assert m["From"] == "Oleg Example <oleg@vbip.com>"
    assert m["Date"] and m["Message-ID"] and m["Subject"] == "args"


def test_sendmail_lone_dot_ends_input_without_i(pigeond, sendmail, home):
    r = pigeon("somebody@localhost", program=sendmail,
               input=b"Subject: dot\n\nbefore\n.\nafter\n",
               env={"PIGEON_SERVER": server(pigeond), "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert pigeond.wait_for_messages("somebody", 1)[0].endswith(b"\r\n\r\nbefore\r\n")


@pytest.mark.parametrize("flag", ["-i", "-oi"])
def test_sendmail_i_reads_past_a_lone_dot(pigeond, sendmail, home, flag):
    r = pigeon(flag, "somebody@localhost", program=sendmail,
               input=b"Subject: dot\n\nbefore\n.\n..two\nafter\n",
               env={"PIGEON_SERVER": server(pigeond), "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    raw = pigeond.wait_for_messages("somebody", 1)[0]
    assert raw.endswith(b"\r\n\r\nbefore\r\n.\r\n..two\r\nafter\r\n")


def test_sendmail_ignores_common_no_op_options(pigeond, sendmail, home):
    r = pigeon("-odi", "-oem", "-em", "-v", "-oi", "-U", "-B", "8BITMIME", "somebody@localhost",
               program=sendmail, input=b"Subject: noop\n\nx\n",
               env={"PIGEON_SERVER": server(pigeond), "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert len(pigeond.wait_for_messages("somebody", 1)) == 1


def test_pigeon_sendmail_subcommand_takes_server_option(pigeond, home):
    r = pigeon("sendmail", "--server", server(pigeond), "somebody@localhost",
               input=b"Subject: sub\n\nx\n", env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert len(pigeond.wait_for_messages("somebody", 1)) == 1


def test_sendmail_without_recipients_exits_usage(sendmail, home):
    r = pigeon(program=sendmail, input=b"Subject: x\n\nx\n", env={"HOME": str(home)})
    assert r.returncode == EX_USAGE
    assert not (home / "dead.letter").exists()  # nothing was read, nothing to keep


def test_sendmail_t_without_recipients_keeps_the_message(sendmail, home):
    r = pigeon("-t", program=sendmail, input=b"Subject: nobody\n\nx\n",
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % closed_port()})
    assert r.returncode == EX_USAGE
    assert b"Subject: nobody" in (home / "dead.letter").read_bytes()


def test_sendmail_t_with_a_field_that_is_not_an_address_keeps_the_message(pigeond, sendmail,
                                                                          home):
    # A line break or a stray bracket in a recipient field must never reach
    # RCPT TO: the whole message is refused, and kept.
    r = pigeon("-t", program=sendmail, input=b'To: "a\r\n DATA"@x@y, b@[le.r>g\nSubject: s\n\nx\n',
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % pigeond.port})
    assert r.returncode == EX_DATAERR, r.stderr
    assert b"not an address" in r.stderr
    assert b"Subject: s" in (home / "dead.letter").read_bytes()
    assert "from=<" not in pigeond.log()  # no transaction was even started


@pytest.mark.parametrize("field", [
    b"To: John Smith",                        # a name, not the address "JohnSmith"
    b"To: somebody@localhost other@localhost",  # two addresses need a comma
    b"To: <john smith@localhost>",
    b"To: " + b"a" * 65,                      # a local part has at most 64 octets
])
def test_sendmail_t_refuses_a_name_or_an_overlong_local_part(pigeond, sendmail, home, field):
    r = pigeon("-t", program=sendmail, input=field + b"\nSubject: s\n\nx\n",
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % pigeond.port})
    assert r.returncode == EX_DATAERR, r.stderr
    assert b"not an address" in r.stderr
    assert b"Subject: s" in (home / "dead.letter").read_bytes()
    assert "from=<" not in pigeond.log()


def test_sendmail_t_accepts_names_beside_addresses(pigeond, sendmail, home):
    field = (b'To: John Smith <somebody@localhost>, "Other, The" <other@localhost>,\n'
             b" third . party @ localhost (obsolete spacing), a" + b"b" * 63 + b"\n")
    r = pigeon("-t", program=sendmail, input=field + b"Subject: s\n\nx\n",
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % pigeond.port})
    assert r.returncode == 0, r.stderr
    for user in ("somebody", "other", "third.party", "a" + "b" * 63):
        assert len(pigeond.wait_for_messages(user, 1)) == 1, (user, pigeond.log())


def test_sendmail_argument_that_is_not_an_address_is_a_usage_error(sendmail, home):
    r = pigeon("a@@b", program=sendmail, input=b"Subject: s\n\nx\n",
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % closed_port()})
    assert r.returncode == EX_USAGE
    assert b"not a valid address" in r.stderr


def test_sendmail_failure_saves_dead_letter_in_mbox_format(sendmail, home):
    message = b"Subject: lost?\n\nFrom the start of a line\n>From quoted already\nend\n"
    r = pigeon("-f", "oleg@vbip.com", "somebody@localhost", program=sendmail, input=message,
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % closed_port()})
    assert r.returncode == EX_NOHOST
    dead = home / "dead.letter"
    assert ("saved in %s" % dead).encode() in r.stderr
    text = dead.read_bytes()
    first, rest = text.split(b"\n", 1)
    assert re.fullmatch(rb"From oleg@vbip\.com \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", first)
    assert rest == (b"Subject: lost?\n\n>From the start of a line\n>>From quoted already\n"
                    b"end\n\n")
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600
    # A second failure appends.
    pigeon("somebody@localhost", program=sendmail, input=b"Subject: again\n\nx\n",
           env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % closed_port()})
    assert dead.read_bytes().startswith(text) and b"Subject: again" in dead.read_bytes()


def test_sendmail_dead_letter_falls_back_to_tmp_without_a_home(sendmail):
    r = pigeon("somebody@localhost", program=sendmail, input=b"Subject: homeless\n\nx\n",
               env={"HOME": "/nonexistent/nowhere",
                    "PIGEON_SERVER": "127.0.0.1:%d" % closed_port()})
    assert r.returncode == EX_NOHOST
    m = re.search(rb"saved in (/tmp/dead\.letter\.%d\.\d+(\.\d+)?)" % os.getuid(), r.stderr)
    assert m, r.stderr
    path = pathlib.Path(m.group(1).decode())
    try:
        assert b"Subject: homeless" in path.read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        path.unlink()


def test_sendmail_refused_recipient_exits_nouser_and_keeps_the_message(make_pigeond, sendmail,
                                                                      home):
    d = make_pigeond(trusted=UNTRUSTED)
    r = pigeon("somebody@localhost", "x@example.org", program=sendmail,
               input=b"Subject: partial\n\nx\n",
               env={"HOME": str(home), "PIGEON_SERVER": server(d)})
    assert r.returncode == EX_NOUSER
    assert b"x@example.org: refused: 554 5.7.1" in r.stderr
    assert b"Subject: partial" in (home / "dead.letter").read_bytes()


def test_sendmail_bs_relays_smtp_byte_for_byte(pigeond, sendmail):
    script = (b"EHLO client\r\nMAIL FROM:<oleg@vbip.com>\r\nRCPT TO:<somebody@localhost>\r\n"
              b"DATA\r\nSubject: bs\r\n\r\n..dotted\r\n.\r\nQUIT\r\n")
    r = pigeon("-bs", program=sendmail, input=script, env={"PIGEON_SERVER": server(pigeond)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"220 pigeon.test ESMTP Pigeon\r\n250-pigeon.test\r\n")
    assert r.stdout.endswith(b"221 2.0.0 Bye\r\n")
    assert pigeond.wait_for_messages("somebody", 1)[0].endswith(b"\r\n\r\n.dotted\r\n")


def test_sendmail_bs_without_server_says_421(sendmail):
    r = pigeon("-bs", program=sendmail, input=b"QUIT\r\n",
               env={"PIGEON_SERVER": "127.0.0.1:%d" % closed_port()})
    assert r.returncode == EX_NOHOST
    assert r.stdout.startswith(b"421 4.4.1 ") and r.stdout.endswith(b"\r\n")


# ---- against aiosmtpd: the exact bytes a foreign server receives ------------------------------

EXACT = (b"From: a@example.org\n"
         b"To: b@example.org\n"
         b"Subject: exact\n"
         b"Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
         b"Message-ID: <exact@example.org>\n"
         b"\n"
         b".leading dot\n"
         b"..two dots\n"
         b".\n"
         b"last line\n")


def test_send_to_aiosmtpd_arrives_byte_for_byte_with_dot_stuffing(aiosmtpd_server, tmp_path):
    f = tmp_path / "exact.eml"
    f.write_bytes(EXACT)
    r = pigeon("send", "-v", "--server", "127.0.0.1:%d" % aiosmtpd_server.port,
               "--from", "a@example.org", "--to", "b@example.org", "--file", str(f))
    assert r.returncode == 0, r.stderr
    assert aiosmtpd_server.event.wait(5)
    mail_from, rcpt, content, _ = aiosmtpd_server.got[0]
    assert mail_from == "a@example.org" and rcpt == ["b@example.org"]
    assert content == EXACT.replace(b"\n", b"\r\n")  # nothing added, CRLF, dots undone
    lines = r.stdout.decode().splitlines()
    assert "C: DATA" in lines and not any("BDAT" in l for l in lines)  # no CHUNKING there
    assert lines[-1] == "b@example.org: 250 2.0.0 Ok: recorded"


def test_sendmail_to_aiosmtpd_arrives_byte_for_byte(aiosmtpd_server, sendmail, home):
    r = pigeon("-i", "-f", "a@example.org", "b@example.org", "c@example.org", program=sendmail,
               input=EXACT, env={"HOME": str(home),
                                 "PIGEON_SERVER": "127.0.0.1:%d" % aiosmtpd_server.port})
    assert r.returncode == 0, r.stderr
    assert aiosmtpd_server.event.wait(5)
    mail_from, rcpt, content, _ = aiosmtpd_server.got[0]
    assert (mail_from, rcpt) == ("a@example.org", ["b@example.org", "c@example.org"])
    assert content == EXACT.replace(b"\n", b"\r\n")


def test_send_8bit_to_aiosmtpd_uses_8bitmime(aiosmtpd_server):
    r = pigeon("send", "--server", "127.0.0.1:%d" % aiosmtpd_server.port,
               "--from", "a@example.org", "--to", "b@example.org", "--body", "Grüße")
    assert r.returncode == 0, r.stderr
    assert aiosmtpd_server.event.wait(5)
    _, _, content, options = aiosmtpd_server.got[0]
    assert "BODY=8BITMIME" in options
    assert content.endswith("\r\n\r\nGrüße\r\n".encode())


# ---- against Postfix's smtp-sink: injected failures ---------------------------------------------

@pytest.mark.parametrize("options, status, summary", [
    ((), 0, "250 2.0.0 Ok"),
    (("-r", "rcpt"), EX_TEMPFAIL, "deferred: 450 4.3.0 Error: command failed"),
    (("-f", "rcpt"), EX_NOUSER, "refused: 500 5.3.0 Error: command failed"),
    (("-f", "mail"), EX_UNAVAILABLE, "failed: 500 5.3.0 Error: command failed"),
    (("-f", "."), EX_UNAVAILABLE, "failed: 500 5.3.0 Error: command failed"),
    (("-r", "."), EX_TEMPFAIL, "deferred: 450 4.3.0 Error: command failed"),
    (("-Q", "rcpt"), EX_TEMPFAIL, "deferred: 421 4.0.0 Server closing connection"),
    (("-q", "data"), EX_TEMPFAIL, None),
])
def test_send_to_smtp_sink_maps_replies_to_exit_codes(smtp_sink, options, status, summary):
    port = smtp_sink(*options)
    r = pigeon("send", "--server", "127.0.0.1:%d" % port, "--from", "a@example.org",
               "--to", "b@example.org", "--to", "c@example.org", "--body", "x",
               "--timeout", "10")
    assert r.returncode == status, (r.stdout, r.stderr)
    lines = r.stdout.decode().splitlines()
    if summary is None:
        assert lines == [] and b"closed" in r.stderr
    else:
        assert lines == ["b@example.org: " + summary, "c@example.org: " + summary]


def test_sendmail_tempfail_from_smtp_sink_keeps_the_message(smtp_sink, sendmail, home):
    port = smtp_sink("-r", "rcpt")
    r = pigeon("b@example.org", program=sendmail, input=b"Subject: later\n\nx\n",
               env={"HOME": str(home), "PIGEON_SERVER": "127.0.0.1:%d" % port})
    assert r.returncode == EX_TEMPFAIL
    assert b"b@example.org: deferred: 450 4.3.0" in r.stderr
    assert b"Subject: later" in (home / "dead.letter").read_bytes()


# ---- pigeon talk, in a terminal -------------------------------------------------------------------

SEED_BODY = ["Subject: My first e-mail message.", "", " First line of a message.",
             " Second line.", ".a line with a leading dot", "."]


def spawn_talk(*args, env=None, home=None):
    if pexpect is None:
        pytest.skip("pexpect is not installed")
    full_env = dict(os.environ, TERM="xterm", HOME=str(home or "/nonexistent"))
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return pexpect.spawn(PIGEON, ["talk", *args], env=full_env, timeout=10)


def test_talk_seed_session_in_a_terminal_delivers_the_message(pigeond, home):
    c = spawn_talk("127.0.0.1:%d" % pigeond.port, home=home)
    c.expect("220 pigeon.test ESMTP Pigeon")
    c.expect("smtp> ")
    for line, reply in [("HELO oleg", "250 pigeon.test"),
                        ("MAIL FROM: oleg@vbip.com", "250 Ok"),
                        ("RCPT TO: somebody@localhost", "250 Ok"),
                        ("DATA", "354 End data with")]:
        c.send(line + "\n")
        c.expect(reply)
    c.expect("data> ")
    for line in SEED_BODY:
        c.send(line + "\n")
    c.expect(r"250 Ok: queued as [0-9A-Z]{14}")  # HELO: no enhanced codes
    c.expect("smtp> ")
    c.send("QUIT\n")
    c.expect("221 Bye")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    msgs = pigeond.wait_for_messages("somebody", 1)
    assert len(msgs) == 1, pigeond.log()
    assert msgs[0].endswith(b"Subject: My first e-mail message.\r\n\r\n First line of a message."
                            b"\r\n Second line.\r\n.a line with a leading dot\r\n")
    hist = home / ".pigeon_history"
    assert stat.S_IMODE(hist.stat().st_mode) == 0o600
    assert b"HELO" in hist.read_bytes() and b"Subject" not in hist.read_bytes()


def test_talk_colours_replies_by_class_on_a_terminal(pigeond):
    c = spawn_talk("127.0.0.1:%d" % pigeond.port)
    c.expect("\x1b\\[32m220 pigeon.test")  # 2xx green
    c.expect("smtp> ")
    c.send("NOSUCHVERB\n")
    c.expect("\x1b\\[31m500 ")  # 5xx red
    c.send("QUIT\n")
    c.expect(pexpect.EOF)


def test_talk_no_colour_with_no_color_set(pigeond):
    c = spawn_talk("127.0.0.1:%d" % pigeond.port, env={"NO_COLOR": "1"})
    c.expect("smtp> ")
    c.send("QUIT\n")
    c.expect(pexpect.EOF)
    assert b"\x1b[32m" not in c.before and b"220 pigeon.test" in c.before


def test_talk_verbose_shows_raw_bytes_escaped(pigeond):
    c = spawn_talk("-v", "127.0.0.1:%d" % pigeond.port, env={"NO_COLOR": "1"})
    c.expect(r"S: 220 pigeon\.test ESMTP Pigeon\\r\\n")
    c.send("NOOP\n")
    c.expect(r"C: NOOP\\r\\n")
    c.expect(r"S: 250 Ok\\r\\n")
    c.send("QUIT\n")
    c.expect(pexpect.EOF)


def test_talk_reply_arriving_while_typing_keeps_the_half_typed_line():
    """The poll() loop shows a reply at once, and the line being edited survives it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():
        conn, _ = listener.accept()
        time.sleep(1.0)  # the user starts typing before the greeting
        conn.sendall(b"220-slow\r\n220 greeting\r\n")
        received.append(conn.makefile("rb").readline())
        conn.sendall(b"250 ok\r\n")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    c = spawn_talk("127.0.0.1:%d" % listener.getsockname()[1], env={"NO_COLOR": "1"})
    c.expect("smtp> ")
    c.send("HEL")
    c.expect("220-slow\r\n220 greeting\r\n")  # a multi-line reply, shown together
    c.expect("smtp> HEL")  # the prompt and the half-typed line, drawn again
    c.send("O x\n")
    c.expect("250 ok")
    c.expect(pexpect.EOF)
    t.join()
    listener.close()
    assert received == [b"HELO x\r\n"]


def test_talk_ctrl_d_leaves(pigeond):
    c = spawn_talk("127.0.0.1:%d" % pigeond.port)
    c.expect("smtp> ")
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


# ---- pigeon talk, from a pipe --------------------------------------------------------------------

PIPE_SCRIPT = (b"EHLO pipe\nMAIL FROM:<oleg@vbip.com>\nRCPT TO:<somebody@localhost>\nDATA\n"
               b"Subject: piped\n\n.hidden dot\nbody\n.\nQUIT\n")


def test_talk_from_a_pipe_waits_for_each_reply(pigeond):
    r = pigeon("talk", "127.0.0.1:%d" % pigeond.port, input=PIPE_SCRIPT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "220 pigeon.test ESMTP Pigeon"
    assert lines[1] == "250-pigeon.test" and lines[2] == "250-PIPELINING"
    codes = [l[:4] for l in lines]
    assert codes[-5:] == ["250 ", "250 ", "354 ", "250 ", "221 "]
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as [0-9A-Z]{14}", lines[-2])
    assert "\x1b" not in r.stdout.decode()  # not a terminal: no colour
    raw = pigeond.wait_for_messages("somebody", 1)[0]
    assert raw.endswith(b"Subject: piped\r\n\r\n.hidden dot\r\nbody\r\n")


def test_talk_from_a_pipe_verbose_shows_both_directions(pigeond):
    r = pigeon("talk", "-v", "127.0.0.1:%d" % pigeond.port, input=b"NOOP\nQUIT\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        r"S: 220 pigeon.test ESMTP Pigeon\r\n",
        r"C: NOOP\r\n",
        r"S: 250 Ok\r\n",  # no EHLO, so no enhanced status codes
        r"C: QUIT\r\n",
        r"S: 221 Bye\r\n",
    ]


def test_talk_from_a_pipe_ending_inside_data_exits_dataerr(pigeond):
    r = pigeon("talk", "127.0.0.1:%d" % pigeond.port,
               input=b"HELO x\nMAIL FROM:<a@b>\nRCPT TO:<somebody@localhost>\nDATA\nunfinished\n")
    assert r.returncode == EX_DATAERR
    assert pigeond.messages("somebody") == []


def test_talk_from_a_pipe_ends_when_input_ends(pigeond):
    r = pigeon("talk", "127.0.0.1:%d" % pigeond.port, input=b"NOOP\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["220 pigeon.test ESMTP Pigeon", "250 Ok"]


def test_talk_server_closing_after_421_is_a_normal_end(smtp_sink):
    port = smtp_sink("-Q", "mail")
    r = pigeon("talk", "127.0.0.1:%d" % port, input=b"HELO x\nMAIL FROM:<a@b>\nNOOP\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[-1].startswith("421 ")


def test_talk_server_vanishing_without_a_reply_exits_protocol(smtp_sink):
    port = smtp_sink("-q", "mail")
    r = pigeon("talk", "127.0.0.1:%d" % port, input=b"HELO x\nMAIL FROM:<a@b>\nNOOP\n")
    assert r.returncode == EX_PROTOCOL
    assert b"without replying" in r.stderr


def test_talk_connection_refused_exits_nohost():
    r = pigeon("talk", "127.0.0.1:%d" % closed_port(), input=b"QUIT\n")
    assert r.returncode == EX_NOHOST


def test_talk_escapes_control_characters_from_the_server():
    """A server that sends an escape sequence must not reach the terminal with it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        conn.sendall(b"220 evil \x1b[2J ready\r\n")
        conn.recv(100)
        conn.sendall(b"221 bye\r\n")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    r = pigeon("talk", "127.0.0.1:%d" % listener.getsockname()[1], input=b"QUIT\n")
    t.join()
    listener.close()
    assert b"\x1b" not in r.stdout
    assert b"\\x1b[2J" in r.stdout


# ---- pigeon queue ------------------------------------------------------------------------------------

def test_queue_lists_a_message_waiting_for_a_remote_recipient(pigeond, sendmail):
    r = pigeon("send", "-s", server(pigeond), "--from", "oleg@vbip.com",
               "--to", "remote@example.org", "--body", "stays queued")
    assert r.returncode == 0, r.stderr
    queue_id = r.stdout.decode().split()[-1]
    assert pigeond.wait_for_log("%s: to=<remote@example.org>, relay=none" % queue_id)
    size = (pigeond.dir / "var" / "spool" / "msg" / queue_id).stat().st_size

    r = pigeon("queue", "-f", str(pigeond.conf), cwd=pigeond.dir)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("-Queue ID-")
    fields = lines[1].split()
    assert fields[0] == queue_id and fields[1] == str(size) and fields[-1] == "oleg@vbip.com"
    assert lines[2].strip() == "remote@example.org"
    assert lines[-1] == "-- 1 Kbytes in 1 Request."

    # The same from the queue directory, and as mailq / sendmail -bp.
    spool = str(pigeond.dir / "var" / "spool")
    assert pigeon("queue", "-d", spool).stdout == r.stdout
    assert pigeon("-bp", "-C", str(pigeond.conf), program=sendmail,
                  cwd=pigeond.dir).stdout == r.stdout
    mailq = pathlib.Path(sendmail).parent / "mailq"
    mailq.symlink_to(PIGEON)
    assert pigeon("-d", spool, program=str(mailq)).stdout == r.stdout


def test_queue_empty(pigeond):
    r = pigeon("queue", "-f", str(pigeond.conf), cwd=pigeond.dir)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Mail queue is empty\n"


def test_queue_without_read_permission_says_so(pigeond):
    if os.getuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to run as another user")
    spool = str(pigeond.dir / "var" / "spool")
    r = subprocess.run(["runuser", "-u", "nobody", "--", PIGEON, "queue", "-d", spool],
                       capture_output=True, timeout=30)
    assert r.returncode == EX_NOPERM
    assert b"Permission denied" in r.stderr and b"run as root" in r.stderr


def test_queue_bad_configuration_exits_config(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("no such directive\n")
    r = pigeon("queue", "-f", str(conf))
    assert r.returncode == EX_CONFIG
    assert b"bad.conf" in r.stderr


# ---- the command itself --------------------------------------------------------------------------------

def test_version_and_help():
    r = pigeon("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"pigeon ")
    for cmd in ("send", "talk", "sendmail", "queue"):
        r = pigeon("help", cmd)
        assert r.returncode == 0 and b"usage:" in r.stdout
    assert pigeon("frobnicate").returncode == EX_USAGE
    assert pigeon().returncode == EX_USAGE
