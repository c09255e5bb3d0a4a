"""Real SMTP clients against pigeond: Python's smtplib, swaks and curl.

Each test knows the exact bytes its client puts between DATA and the final
dot (after the client's own dot-stuffing, which pigeond undoes) and checks
that the mailbox holds exactly those, after pigeond's trace.  Most run
against an untrusted pigeond, where only CRLF line endings are accepted, so
a client that sent bare LFs would be caught.
"""

import copy
import io
import re
import shutil
import smtplib
import subprocess
from email.generator import BytesGenerator
from email.message import EmailMessage

import pytest

from conftest import TRACE

UNTRUSTED = "192.0.2.0/24"  # loopback is not in it

# Lines that test dot-stuffing both ways, and a line that is a lone dot.
TRICKY = (b"Subject: client test\r\n"
          b"X-Test: 1\r\n"
          b"\r\n"
          b".leading dot\r\n"
          b"..two dots\r\n"
          b".\r\n"
          b"last line\r\n")


def split_trace(msg):
    m = TRACE.match(msg)
    assert m, "no well-formed trace at the start of %r" % msg[:400]
    return m, msg[m.end():]


def delivered(d, user, count=1):
    """(trace, content) of each of user's messages, once count have arrived."""
    msgs = d.wait_for_messages(user, count)
    assert len(msgs) == count, d.log()
    return [split_trace(m) for m in msgs]


def assert_nothing_delivered(d):
    # Session 1 is the fixture's check that pigeond listens; the client's is session 2.
    assert d.wait_for_log("session 2: disconnect from 127.0.0.1, 0 messages queued"), d.log()
    assert list((d.dir / "var" / "mail").iterdir()) == []


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=30, **kw)


# ---- Python smtplib ------------------------------------------------------------------------------


def smtp(d):
    return smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)


def test_smtplib_send_message_after_ehlo(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    msg = EmailMessage()
    msg["From"] = "Sender <sender@b.example>"
    msg["To"] = "user@localhost"
    msg["Bcc"] = "hidden@localhost"  # send_message removes it from the content
    msg["Subject"] = "smtplib"
    msg.set_content(".starts with a dot\nplain text\n")
    with smtp(d) as s:
        code, text = s.ehlo()
        assert code == 250 and text.split(b"\n") == [
            b"pigeon.test", b"PIPELINING", b"SIZE 36700160", b"8BITMIME", b"SMTPUTF8",
            b"CHUNKING", b"BINARYMIME", b"DSN", b"ENHANCEDSTATUSCODES"]
        assert s.send_message(msg) == {}
    # What smtplib sends: the message flattened with CRLF, Bcc removed.
    copy_ = copy.copy(msg)
    del copy_["Bcc"]
    out = io.BytesIO()
    BytesGenerator(out).flatten(copy_, linesep="\r\n")
    expected = out.getvalue()
    assert b"Bcc" not in expected and b"\r\n.starts with a dot\r\n" in expected
    for user in ("user", "hidden"):
        [(m, content)] = delivered(d, user)
        assert (m["helo"], m["proto"], m["sender"]) == (b"client.example", b"ESMTP",
                                                        b"sender@b.example")
        assert content == expected


def test_smtplib_sendmail_bytes_are_stored_exactly(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    with smtp(d) as s:
        assert s.sendmail("sender@b.example", ["user@localhost"], TRICKY) == {}
    [(m, content)] = delivered(d, "user")
    assert (m["rcpt"], content) == (b"user@localhost", TRICKY)


def test_smtplib_8bit_content_with_body_8bitmime(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    data = (b"Subject: 8bit\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b"\xe9t\xe9 \xe0 la plage \xa9 \xff\r\n")
    with smtp(d) as s:
        assert s.sendmail("sender@b.example", ["user@localhost"], data,
                          mail_options=["BODY=8BITMIME"]) == {}
    [(_, content)] = delivered(d, "user")
    assert content == data


def test_smtplib_utf8_content_with_smtputf8(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    data = "Subject: Grüße aus Köln\r\nFrom: Jörg <sender@b.example>\r\n\r\nÄpfel, Birnen 🍐\r\n"
    with smtp(d) as s:
        assert s.sendmail("sender@b.example", ["user@localhost"], data.encode(),
                          mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    [(m, content)] = delivered(d, "user")
    assert (m["proto"], content) == (b"UTF8SMTP", data.encode())


def test_smtplib_send_message_to_utf8_addresses(make_pigeond):
    # smtplib adds SMTPUTF8 itself when an address is not ASCII.
    d = make_pigeond(trusted=UNTRUSTED, domains='localhost, "bücher.example"')
    msg = EmailMessage()
    msg["From"] = "Jörg <jörg@bücher.example>"
    msg["To"] = "Zoë <zoë@bücher.example>"
    msg["Subject"] = "Grüße"
    msg.set_content("Äpfel\n", cte="8bit")
    with smtp(d) as s:
        assert s.send_message(msg) == {}
    out = io.BytesIO()
    BytesGenerator(out, policy=msg.policy.clone(utf8=True)).flatten(msg, linesep="\r\n")
    [(m, content)] = delivered(d, "zoë")
    assert (m["sender"], m["rcpt"], m["proto"]) == ("jörg@bücher.example".encode(),
                                                    "zoë@bücher.example".encode(), b"UTF8SMTP")
    assert content == out.getvalue()


def test_smtplib_sees_relay_refusal(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED)
    with smtp(d) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("sender@b.example", ["user@other.org"], TRICKY)
    assert e.value.recipients == {
        "user@other.org": (554, b"5.7.1 <user@other.org>: Relay access denied")}
    assert_nothing_delivered(d)


def test_smtplib_sees_size_refusal_at_mail(make_pigeond):
    d = make_pigeond(trusted=UNTRUSTED, limits={"message-size": "64K"})
    with smtp(d) as s:
        # smtplib announces the size (RFC 1870), so the refusal comes at MAIL.
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("sender@b.example", ["user@localhost"], b"x" * 65535 + b"\r\n\r\n")
    assert (e.value.smtp_code, e.value.smtp_error) == (
        552, b"5.3.4 Error: message size exceeds the limit of 65536 octets")
    assert_nothing_delivered(d)


# ---- swaks ---------------------------------------------------------------------------------------

needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")


def swaks(d, *args):
    return run(["swaks", "--server", "127.0.0.1:%d" % d.port, "--from", "sender@b.example",
                "--helo", "client.example", *args])


@needs_swaks
def test_swaks_message_from_a_file(make_pigeond, tmp_path):
    d = make_pigeond(trusted=UNTRUSTED)
    data = TRICKY[:-2]  # swaks ends the data with CRLF "." CRLF itself
    (tmp_path / "msg").write_bytes(data)
    r = swaks(d, "--to", "user@localhost", "--data", "@%s" % (tmp_path / "msg"))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"<-  221 2.0.0 Bye" in r.stdout
    [(m, content)] = delivered(d, "user")
    assert (m["helo"], m["proto"], m["rcpt"]) == (b"client.example", b"ESMTP", b"user@localhost")
    assert content == TRICKY


@needs_swaks
def test_swaks_converts_a_file_with_lf_to_crlf(make_pigeond, tmp_path):
    d = make_pigeond(trusted=UNTRUSTED)
    (tmp_path / "msg").write_bytes(TRICKY.replace(b"\r\n", b"\n")[:-1])
    r = swaks(d, "--to", "user@localhost", "--data", "@%s" % (tmp_path / "msg"))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    [(_, content)] = delivered(d, "user")
    assert content == TRICKY


@needs_swaks
def test_swaks_pipeline_with_a_refused_recipient(make_pigeond, tmp_path):
    d = make_pigeond(trusted=UNTRUSTED)
    (tmp_path / "msg").write_bytes(TRICKY[:-2])
    r = swaks(d, "--pipeline", "--to", "user@localhost,someone@other.org,other@localhost",
              "--data", "@%s" % (tmp_path / "msg"))
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    # swaks sent the whole envelope before reading a reply, and got them in order.
    assert re.search(r" -> MAIL FROM:<sender@b\.example>\n"
                     r" -> RCPT TO:<user@localhost>\n"
                     r" -> RCPT TO:<someone@other\.org>\n"
                     r" -> RCPT TO:<other@localhost>\n"
                     r" -> DATA\n"
                     r"<-  250 2\.1\.0 Ok\n"
                     r"<-  250 2\.1\.5 Ok\n"
                     r"<\*\* 554 5\.7\.1 <someone@other\.org>: Relay access denied\n"
                     r"<-  250 2\.1\.5 Ok\n"
                     r"<-  354 End data with <CR><LF>\.<CR><LF>\n", out), out
    for user in ("user", "other"):
        [(m, content)] = delivered(d, user)
        assert (m["rcpt"], content) == (None, TRICKY)  # two recipients: no "for"
    assert sorted(p.name for p in (d.dir / "var" / "mail").iterdir()) == ["other", "user"]


@needs_swaks
def test_swaks_with_helo(make_pigeond, tmp_path):
    d = make_pigeond(trusted=UNTRUSTED)
    (tmp_path / "msg").write_bytes(TRICKY[:-2])
    r = swaks(d, "--protocol", "SMTP", "--to", "user@localhost",
              "--data", "@%s" % (tmp_path / "msg"))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b" -> HELO client.example" in r.stdout
    assert b"<-  250 Ok: queued as " in r.stdout  # no enhanced codes after HELO
    [(m, content)] = delivered(d, "user")
    assert (m["proto"], content) == (b"SMTP", TRICKY)


@needs_swaks
def test_swaks_has_no_bdat_so_chunking_is_covered_by_test_protocol():
    # This swaks predates CHUNKING support; if a newer one grows it, this test
    # fails as a reminder to add a swaks BDAT test here.
    help_text = run(["swaks", "--help"]).stdout.decode().lower()
    assert "bdat" not in help_text and "chunking" not in help_text


# ---- curl ----------------------------------------------------------------------------------------


def curl(d, *args):
    # The URL's path is the EHLO name (else curl uses the upload file's name).
    return run(["curl", "-sS", "smtp://127.0.0.1:%d/client.example" % d.port, *args])


@pytest.fixture
def tricky_file(tmp_path):
    p = tmp_path / "msg.eml"
    p.write_bytes(TRICKY)
    return str(p)


def test_curl_upload_is_stored_exactly(make_pigeond, tricky_file):
    d = make_pigeond(trusted=UNTRUSTED)
    r = curl(d, "--mail-from", "sender@b.example", "--mail-rcpt", "user@localhost",
             "--upload-file", tricky_file)
    assert r.returncode == 0, r.stderr.decode()
    [(m, content)] = delivered(d, "user")
    assert (m["helo"], m["proto"], m["sender"], m["rcpt"]) == (
        b"client.example", b"ESMTP", b"sender@b.example", b"user@localhost")
    assert content == TRICKY


def test_curl_several_recipients(make_pigeond, tricky_file):
    d = make_pigeond(trusted=UNTRUSTED)
    r = curl(d, "--mail-from", "sender@b.example", "--mail-rcpt", "one@localhost",
             "--mail-rcpt", "two@localhost", "--mail-rcpt", "postmaster",
             "--upload-file", tricky_file)
    assert r.returncode == 0, r.stderr.decode()
    for user in ("one", "two", "postmaster"):
        assert [c for _, c in delivered(d, user)] == [TRICKY]


def test_curl_crlf_option_makes_an_lf_file_acceptable(make_pigeond, tmp_path):
    d = make_pigeond(trusted=UNTRUSTED)
    (tmp_path / "lf.eml").write_bytes(TRICKY.replace(b"\r\n", b"\n"))
    r = curl(d, "--crlf", "--mail-from", "sender@b.example", "--mail-rcpt", "user@localhost",
             "--upload-file", str(tmp_path / "lf.eml"))
    assert r.returncode == 0, r.stderr.decode()
    assert [c for _, c in delivered(d, "user")] == [TRICKY]


def test_curl_lf_file_is_refused_from_untrusted_client(make_pigeond, tmp_path):
    # Without --crlf curl sends the bare LFs as they are: refused, nothing stored.
    d = make_pigeond(trusted=UNTRUSTED)
    (tmp_path / "lf.eml").write_bytes(TRICKY.replace(b"\r\n", b"\n"))
    r = curl(d, "-v", "--mail-from", "sender@b.example", "--mail-rcpt", "user@localhost",
             "--upload-file", str(tmp_path / "lf.eml"))
    assert r.returncode != 0
    assert (b"< 550 5.5.2 Error: bare LF in message data; lines must end with CRLF "
            b"(RFC 5321 2.3.8)") in r.stderr
    assert_nothing_delivered(d)


def test_curl_lf_file_from_trusted_client_is_stored_with_crlf(pigeond, tmp_path):
    plain = b"Subject: lf\r\n\r\nno dots here\r\nsecond line\r\n"
    (tmp_path / "lf.eml").write_bytes(plain.replace(b"\r\n", b"\n"))
    r = curl(pigeond, "--mail-from", "sender@b.example", "--mail-rcpt", "user@localhost",
             "--upload-file", str(tmp_path / "lf.eml"))
    assert r.returncode == 0, r.stderr.decode()
    # curl ends data that does not end in CRLF with CRLF "." CRLF: one more empty line.
    assert [c for _, c in delivered(pigeond, "user")] == [plain + b"\r\n"]


def test_curl_lf_file_from_trusted_client_ends_at_a_lone_dot_line(pigeond, tmp_path):
    # curl stuffs dots only after CRLF, so an LF file's ".\n" line reaches pigeond
    # as is; from a trusted client that is the end of the data (by design, as
    # Postfix does for its bare-newline exclusions), and the rest is commands.
    (tmp_path / "lf.eml").write_bytes(TRICKY.replace(b"\r\n", b"\n"))
    r = curl(pigeond, "--mail-from", "sender@b.example", "--mail-rcpt", "user@localhost",
             "--upload-file", str(tmp_path / "lf.eml"))
    assert r.returncode == 0, r.stderr.decode()  # curl saw the 250 and was content
    assert [c for _, c in delivered(pigeond, "user")] == [
        b"Subject: client test\r\nX-Test: 1\r\n\r\nleading dot\r\n.two dots\r\n"]


def test_curl_relay_attempt_fails(make_pigeond, tricky_file):
    d = make_pigeond(trusted=UNTRUSTED)
    r = curl(d, "-v", "--mail-from", "sender@b.example", "--mail-rcpt", "user@other.org",
             "--upload-file", tricky_file)
    assert r.returncode == 55, r.stderr.decode()  # CURLE_SEND_ERROR: "RCPT failed: 554"
    assert b"< 554 5.7.1 <user@other.org>: Relay access denied" in r.stderr
    assert_nothing_delivered(d)


def test_curl_utf8_addresses(make_pigeond, tmp_path):
    d = make_pigeond(trusted=UNTRUSTED)
    data = "Subject: Grüße\r\n\r\nÄpfel\r\n".encode()
    (tmp_path / "u.eml").write_bytes(data)
    r = curl(d, "-v", "--mail-from", "jörg@bücher.example", "--mail-rcpt", "zoë@localhost",
             "--upload-file", str(tmp_path / "u.eml"))
    assert r.returncode == 0, r.stderr.decode()
    # curl announces SMTPUTF8 itself, and writes the sender's domain as an A-label.
    assert b"SMTPUTF8" in re.search(rb"> MAIL FROM:[^\r\n]*", r.stderr).group(0)
    [(m, content)] = delivered(d, "zoë")
    assert (m["sender"], m["proto"], content) == ("jörg@xn--bcher-kva.example".encode(),
                                                  b"UTF8SMTP", data)


def test_curl_to_a_local_idn_domain(make_pigeond, tricky_file):
    d = make_pigeond(trusted=UNTRUSTED, domains='localhost, "bücher.example"')
    r = curl(d, "--mail-from", "sender@b.example", "--mail-rcpt", "k@bücher.example",
             "--upload-file", tricky_file)
    assert r.returncode == 0, r.stderr.decode()
    assert [c for _, c in delivered(d, "k")] == [TRICKY]
