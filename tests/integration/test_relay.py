"""No open relay, and no mailbox outside the mail root.

An untrusted client may send only to the local domains.  Every old trick
for routing through a server is refused with 554 5.7.1 "Relay access
denied", from anybody when it hides in the local part (percent hack, bang
path, quoted "@"), from untrusted clients when it names another domain
(plainly, by source route, by address literal, by IDN).  A trusted client's
mail for other domains is accepted and kept in the queue (this pigeond does
not deliver to other servers yet).

The local part becomes a directory name, so anything that could leave
var/mail (a leading dot, a slash) is refused with 553 5.1.3.
"""

import pathlib
import re

import pytest

from conftest import TRACE

UNTRUSTED = "192.0.2.0/24"  # loopback is not in it
TRUSTED = "127.0.0.0/8"

MAIL_OK = (250, [b"250 2.1.0 Ok"])
RCPT_OK = (250, [b"250 2.1.5 Ok"])
GO_AHEAD = (354, [b"354 End data with <CR><LF>.<CR><LF>"])
BYE = (221, [b"221 2.0.0 Bye"])
NO_VALID_RCPT = (554, [b"554 5.5.1 Error: no valid recipients"])
BAD_SYNTAX = (501, [b"501 5.1.3 Error: bad recipient address syntax"])
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-Z]{14})$")

BODY = b"Subject: relay test\r\n\r\nhello\r\n"


def relay_denied(canonical):
    return (554, [b"554 5.7.1 <%s>: Relay access denied" % canonical])


def not_allowed(canonical):
    return (553, [b"553 5.1.3 <%s>: mailbox name not allowed" % canonical])


# id, the RCPT TO argument, the address as pigeond quotes it back.
# Routing hidden in the local part: refused whoever asks.
LOCAL_PART_ROUTING = [
    ("percent-hack", b"<user%other.org@localhost>", b"user%other.org@localhost"),
    ("percent-hack-legacy-form", b"user%other.org@localhost", b"user%other.org@localhost"),
    ("quoted-percent-hack", b'<"user%other.org"@localhost>', b"user%other.org@localhost"),
    ("bang-path", b"<other.org!user@localhost>", b"other.org!user@localhost"),
    ("quoted-at", b'<"user@other.org"@localhost>', b'"user@other.org"@localhost'),
    ("percent-hack-upper-case", b"<USER%OTHER.ORG@LOCALHOST>", b"USER%OTHER.ORG@LOCALHOST"),
]
# Another domain: refused from untrusted clients, queued from trusted ones.
REMOTE = [
    ("remote", b"<user@other.org>", b"user@other.org"),
    ("remote-upper-case", b"<USER@OTHER.ORG>", b"USER@OTHER.ORG"),
    ("source-route", b"<@localhost:user@other.org>", b"user@other.org"),
    ("source-route-two-hops", b"<@localhost,@localhost:user@other.org>", b"user@other.org"),
    ("ipv4-literal", b"<user@[192.0.2.1]>", b"user@[192.0.2.1]"),
    ("own-ipv4-literal", b"<user@[127.0.0.1]>", b"user@[127.0.0.1]"),
    ("ipv6-literal", b"<user@[IPv6:2001:db8::1]>", b"user@[IPv6:2001:db8::1]"),
    ("localhost-as-subdomain", b"<user@localhost.other.org>", b"user@localhost.other.org"),
    ("localhost-as-suffix", b"<user@notlocalhost>", b"user@notlocalhost"),
    ("a-label", b"<user@xn--bcher-kva.example>", b"user@xn--bcher-kva.example"),
    ("u-label", "<user@bücher.example>".encode(), "user@bücher.example".encode()),
    ("utf8-local-part", "<jörg@other.org>".encode(), "jörg@other.org".encode()),
]


@pytest.fixture
def sessions(sessions):
    """open(port) -> a session past the greeting and EHLO."""
    return lambda port: sessions(port, ehlo=b"client.example")


def mail(s, rcpt=b""):
    """MAIL FROM, with SMTPUTF8 when the recipient needs it."""
    utf8 = b" SMTPUTF8" if re.search(rb"[\x80-\xff]", rcpt) else b""
    assert s.cmd(b"MAIL FROM:<a@b.example>%s\r\n" % utf8) == MAIL_OK


def split_trace(msg):
    m = TRACE.match(msg)
    assert m, "no well-formed trace at the start of %r" % msg[:400]
    return m, msg[m.end():]


def queued_files(d):
    """Message files in the queue (the journal aside)."""
    spool = d.dir / "var" / "spool"
    return sorted(p for p in spool.rglob("*")
                  if p.is_file() and "journal" not in p.relative_to(spool).parts)


def every_path(d):
    """Every path in pigeond's directory, relative to it, as strings."""
    return sorted(str(p.relative_to(d.dir)) for p in d.dir.rglob("*"))


def assert_refused_and_nothing_kept(d, s):
    """After refused recipients: DATA fails, and nothing is queued or stored anywhere."""
    assert s.cmd(b"DATA\r\n") == NO_VALID_RCPT
    assert s.cmd(b"QUIT\r\n") == BYE
    # Session 1 is the fixture's check that pigeond listens; ours is session 2.
    assert d.wait_for_log("session 2: disconnect from 127.0.0.1, 0 messages queued"), d.log()
    assert queued_files(d) == []
    # pigeond makes the (empty) mail root at start; nothing else may appear: no
    # mailbox, no var/x, nothing at all.
    extra = [p for p in every_path(d) if p not in ("pigeond.conf", "pigeond.log", "var",
                                                   "var/mail", "var/spool")
             and not p.startswith("var/spool/")]
    assert extra == []


def send_data(s):
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    code, lines = s.cmd(BODY + b".\r\n")
    m = QUEUED.match(lines[0]) if code == 250 else None
    assert m, lines
    return m.group(1).decode()


# ---- the relay matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("rcpt,canonical", [c[1:] for c in LOCAL_PART_ROUTING + REMOTE],
                         ids=[c[0] for c in LOCAL_PART_ROUTING + REMOTE])
def test_untrusted_client_cannot_relay(make_pigeond, sessions, rcpt, canonical):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    mail(s, rcpt)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == relay_denied(canonical)
    assert_refused_and_nothing_kept(d, s)


@pytest.mark.parametrize("rcpt,canonical", [c[1:] for c in LOCAL_PART_ROUTING],
                         ids=[c[0] for c in LOCAL_PART_ROUTING])
def test_trusted_client_cannot_route_through_a_local_part(make_pigeond, sessions, rcpt,
                                                          canonical):
    d = make_pigeond(trusted=TRUSTED)
    s = sessions(d.port)
    mail(s, rcpt)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == relay_denied(canonical)
    assert_refused_and_nothing_kept(d, s)


@pytest.mark.parametrize("rcpt,canonical", [c[1:] for c in REMOTE], ids=[c[0] for c in REMOTE])
def test_trusted_client_mail_for_other_domains_is_kept_in_the_queue(make_pigeond, sessions, rcpt,
                                                                     canonical):
    d = make_pigeond(trusted=TRUSTED)
    s = sessions(d.port)
    mail(s, rcpt)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == RCPT_OK
    qid = send_data(s)
    assert s.cmd(b"QUIT\r\n") == BYE
    assert d.wait_for_log("%s: to=<%s>, relay=none, status=deferred (kept in the queue"
                          % (qid, canonical.decode())), d.log()
    assert [p.name for p in queued_files(d)] == [qid]
    assert list((d.dir / "var" / "mail").iterdir()) == []  # nothing delivered locally


def test_one_refused_recipient_does_not_spoil_the_others(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    mail(s)
    assert s.cmd(b"RCPT TO:<user@other.org>\r\n") == relay_denied(b"user@other.org")
    assert s.cmd(b"RCPT TO:<user@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"RCPT TO:<user%other.org@localhost>\r\n") == relay_denied(
        b"user%other.org@localhost")
    send_data(s)
    msgs = d.wait_for_messages("user", 1)
    assert [split_trace(m)[1] for m in msgs] == [BODY]
    assert sorted(p.name for p in (d.dir / "var" / "mail").iterdir()) == ["user"]
    assert d.wait_for_log("nrcpt=1 ")


# ---- local addresses in their variants -----------------------------------------------------------


@pytest.mark.parametrize("rcpt,user", [
    (b"<USER@LOCALHOST>", "user"),
    (b"<user@LocalHost>", "user"),
    (b"<Mixed.Case@localhost>", "mixed.case"),
    (b'<"user"@localhost>', "user"),  # quoting that changes nothing
    (b"<@other.org:user@localhost>", "user"),  # RFC 5321 §4.1.1.3: the route is ignored
    (b"user@localhost", "user"),  # the legacy form without brackets
], ids=["upper-case", "mixed-case-domain", "mixed-case-local", "needless-quotes",
        "source-route-to-local", "no-brackets"])
def test_untrusted_client_may_send_to_local_addresses(make_pigeond, sessions, rcpt, user):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    mail(s)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == RCPT_OK
    send_data(s)
    msgs = d.wait_for_messages(user, 1)
    assert [split_trace(m)[1] for m in msgs] == [BODY]
    assert sorted(p.name for p in (d.dir / "var" / "mail").iterdir()) == [user]


@pytest.mark.parametrize("rcpt", [
    b"<user@localhost.>",  # a trailing dot is not RFC 5321 Domain syntax
    b"<user@other.org.>",
    b"<user@.localhost>",
    b"<user@local..host>",
    b"<user@-localhost>",
    b"<user@localhost->",
    b"<user@>",
    b"<@localhost>",
    b"<user.@localhost>",
    b"<.user@localhost>",
    b"<user@other.org@localhost>",
    b"<user@[192.0.2.256]>",
    b"<user@[IPv7:1::2]>",
    b"<user@[127.0.0.1>",
    b"<@other.org:user@localhost.>",
    b'<"a\x01b"@localhost>',
    b"<user@local_host>",
], ids=repr)
def test_malformed_recipient_is_a_syntax_error(make_pigeond, sessions, rcpt):
    d = make_pigeond(trusted=TRUSTED)  # even trusted clients get no further
    s = sessions(d.port)
    mail(s)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == BAD_SYNTAX
    assert_refused_and_nothing_kept(d, s)


# ---- postmaster (RFC 5321 §4.5.1) ----------------------------------------------------------------


@pytest.mark.parametrize("rcpt", [b"<postmaster>", b"<POSTMASTER>", b"<PostMaster>",
                                  b"<postmaster@localhost>", b"<Postmaster@LOCALHOST>",
                                  b"<postmaster@example.net>", b"postmaster"], ids=repr)
def test_postmaster_is_accepted_for_every_local_domain_even_with_a_user_list(make_pigeond,
                                                                            sessions, rcpt):
    d = make_pigeond(trusted=UNTRUSTED, domains="localhost, example.net",
                     local_action='table users { alice }\n'
                                  'action "local" maildir "./var/mail/%{user}/Maildir" '
                                  'users <users>')
    s = sessions(d.port)
    mail(s)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == RCPT_OK
    assert s.cmd(b"RCPT TO:<bob@localhost>\r\n") == (
        550, [b"550 5.1.1 <bob@localhost>: Recipient address rejected: User unknown"])
    send_data(s)
    msgs = d.wait_for_messages("postmaster", 1)
    assert [split_trace(m)[1] for m in msgs] == [BODY]
    assert sorted(p.name for p in (d.dir / "var" / "mail").iterdir()) == ["postmaster"]


def test_postmaster_of_another_domain_is_not_local(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    mail(s)
    assert s.cmd(b"RCPT TO:<postmaster@other.org>\r\n") == relay_denied(b"postmaster@other.org")
    assert_refused_and_nothing_kept(d, s)


# ---- internationalised addresses (RFC 6531) ------------------------------------------------------

IDN_DOMAINS = 'localhost, "bücher.example"'


def test_utf8_recipient_needs_smtputf8(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED, domains=IDN_DOMAINS)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd("RCPT TO:<jörg@bücher.example>\r\n".encode()) == (
        553, [b"553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8"])
    assert_refused_and_nothing_kept(d, s)


def test_utf8_recipient_in_a_local_idn_domain_is_delivered(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED, domains=IDN_DOMAINS)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example> SMTPUTF8\r\n") == MAIL_OK
    assert s.cmd("RCPT TO:<jörg@bücher.example>\r\n".encode()) == RCPT_OK
    assert s.cmd("RCPT TO:<anna@BüCHER.EXAMPLE>\r\n".encode()) == RCPT_OK
    send_data(s)
    for user in ("jörg", "anna"):
        msgs = d.wait_for_messages(user, 1)
        m, rest = split_trace(msgs[0])
        assert (m["proto"], rest) == (b"UTF8SMTP", BODY)
    assert sorted(p.name for p in (d.dir / "var" / "mail").iterdir()) == ["anna", "jörg"]


@pytest.mark.parametrize("listed,rcpt", [
    ('"bücher.example"', b"<k@xn--bcher-kva.example>"),
    ('"xn--bcher-kva.example"', "<k@bücher.example>".encode()),
], ids=["listed-as-u-label", "listed-as-a-label"])
def test_idn_domain_is_local_in_either_form(make_pigeond, sessions, listed, rcpt):
    d = make_pigeond(trusted=UNTRUSTED, domains="localhost, " + listed)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example> SMTPUTF8\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == RCPT_OK
    send_data(s)
    assert [split_trace(m)[1] for m in d.wait_for_messages("k", 1)] == [BODY]


# ---- mailbox names that could leave the mail root ------------------------------------------------

TRAVERSAL = [
    (b'<"../x"@localhost>', b'"../x"@localhost'),
    (b'<"..\\/x"@localhost>', b'"../x"@localhost'),  # a quoted-pair hides the slash
    (b'<".."@localhost>', b'".."@localhost'),
    (b'<"."@localhost>', b'"."@localhost'),
    (b'<"a/b"@localhost>', b"a/b@localhost"),
    (b"<a/b@localhost>", b"a/b@localhost"),
    (b"<../x@localhost>", None),  # not even valid syntax unquoted
    (b'<"x/../../y"@localhost>', b'"x/../../y"@localhost'),
    (b'<"../../../../../../tmp/pigeon-pwned"@localhost>',
     b'"../../../../../../tmp/pigeon-pwned"@localhost'),
    (b'<".hidden"@localhost>', b'".hidden"@localhost'),
    (b"<user/@localhost>", b"user/@localhost"),
]


@pytest.mark.parametrize("rcpt,canonical", TRAVERSAL, ids=[repr(t[0]) for t in TRAVERSAL])
@pytest.mark.parametrize("trusted", [UNTRUSTED, TRUSTED], ids=["untrusted", "trusted"])
def test_mailbox_name_cannot_leave_the_mail_root(make_pigeond, sessions, rcpt, canonical,
                                                 trusted):
    d = make_pigeond(trusted=trusted)
    s = sessions(d.port)
    mail(s)
    expected = BAD_SYNTAX if canonical is None else not_allowed(canonical)
    assert s.cmd(b"RCPT TO:%s\r\n" % rcpt) == expected
    assert_refused_and_nothing_kept(d, s)
    assert not pathlib.Path("/tmp/pigeon-pwned").exists()
