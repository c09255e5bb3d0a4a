"""`meson install` of libpigeon, as a program that uses it would see it: the
header, the shared and static libraries, the pkg-config file and the manual
pages land in place, a program built only from what was installed (found
through pkg-config) sends mail through pigeond, and the shared library
exports nothing but the API the header declares.

The build directory is the one $PIGEOND came from; the installation goes
into a temporary DESTDIR, never into the system."""

import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import PIGEOND, ROOT

BUILD = pathlib.Path(PIGEOND).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "send.c"
HEADER = ROOT / "include" / "pigeon" / "pigeon.h"

MESSAGE = b"From: a@example.org\nTo: somebody@localhost\nSubject: installed\n\nhello\n"


def build_option(name):
    options = json.loads((BUILD / "meson-info" / "intro-buildoptions.json").read_text())
    return next(o["value"] for o in options if o["name"] == name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The DESTDIR that `meson install` filled, and the installed prefix in it."""
    if not (BUILD / "meson-info").is_dir():
        pytest.fail("%s is not a meson build directory" % BUILD)
    destdir = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["meson", "install", "-C", str(BUILD), "--destdir", str(destdir),
                        "--no-rebuild", "--quiet"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = destdir / build_option("prefix").lstrip("/")
    libdir = prefix / build_option("libdir")
    yield destdir, prefix, libdir
    shutil.rmtree(destdir, ignore_errors=True)


def compile_example(installed, out, *pkg_flags):
    """examples/send.c built from the installed header and library alone."""
    destdir, prefix, libdir = installed
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir / "pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=str(destdir))
    r = subprocess.run(["pkg-config", *pkg_flags, "--cflags", "--libs", "libpigeon"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    flags = r.stdout.split()
    # Every path pkg-config gives is inside the installation.
    for f in flags:
        if f.startswith(("-I", "-L")):
            assert pathlib.Path(f[2:]).resolve().is_relative_to(prefix.resolve()), flags
    compiler = ["cc"]
    sanitize = build_option("b_sanitize")
    if sanitize != "none":  # the library is instrumented: link the sanitizer runtime in
        compiler = ["clang", "-fsanitize=" + sanitize]
    cmd = [*compiler, "-std=c17", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", str(out),
           str(EXAMPLE), *flags]
    if "--static" in pkg_flags:
        # The static archive, not the .so beside it; the rest of the program stays dynamic.
        cmd = [f if f != "-lpigeon" else "-l:libpigeon.a" for f in cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stderr
    return out


def test_install_puts_header_libraries_pkgconfig_and_manuals_in_place(installed):
    destdir, prefix, libdir = installed
    assert (prefix / "include" / "pigeon" / "pigeon.h").read_bytes() == HEADER.read_bytes()
    assert (libdir / "libpigeon.a").is_file()
    so = libdir / "libpigeon.so"
    assert so.is_symlink() and so.resolve().is_file()
    pc = (libdir / "pkgconfig" / "libpigeon.pc").read_text()
    assert "Libs: -L${libdir} -lpigeon" in pc
    assert "Cflags: -I${includedir}" in pc
    for page in ("man1/pigeon.1", "man5/pigeond.conf.5", "man8/pigeond.8"):
        assert (prefix / "share" / "man" / page).is_file(), page
    assert (prefix / "sbin" / "pigeond").is_file()
    assert (prefix / "bin" / "pigeon").is_file()


def test_shared_library_exports_exactly_the_api_in_the_header(installed):
    _, _, libdir = installed
    r = subprocess.run(["nm", "-D", "--defined-only", str(libdir / "libpigeon.so")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    exported = {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}
    exported = {s.split("@")[0] for s in exported} - {""}
    declared = set(re.findall(r"\b(pigeon_\w+)\s*\(", HEADER.read_text()))
    assert declared, "no functions found in the header"
    assert exported == declared, (sorted(exported - declared), sorted(declared - exported))


@pytest.mark.parametrize("linking", ["shared", "static"])
def test_program_built_against_the_installation_sends_mail(installed, pigeond, tmp_path,
                                                           linking):
    _, _, libdir = installed
    pkg_flags = ("--static",) if linking == "static" else ()
    prog = compile_example(installed, tmp_path / ("send-" + linking), *pkg_flags)
    r = subprocess.run(["ldd", str(prog)], capture_output=True, text=True, timeout=30)
    assert ("libpigeon.so" in r.stdout) == (linking == "shared"), r.stdout
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir))
    r = subprocess.run([str(prog), "127.0.0.1", str(pigeond.port), "a@example.org",
                        "somebody@localhost"], input=MESSAGE, env=env, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("somebody@localhost 250 2.0.0 Ok: queued as ")
    msgs = pigeond.wait_for_messages("somebody", 1)
    assert len(msgs) == 1
    assert msgs[0].endswith(MESSAGE.replace(b"\n", b"\r\n"))
