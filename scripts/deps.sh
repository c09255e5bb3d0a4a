#!/bin/sh
# scripts/deps.sh - install what Pigeon needs on Debian 12, and nothing more.
#
# Idempotent: it asks dpkg which packages are missing and installs only those
# (one "apt-get update", then one "apt-get install -y").  It also creates the
# unprivileged system user pigeond runs as.  Safe to run on every build.
set -eu

# Build: compilers, Meson, the libraries we link.
BUILD="gcc clang meson ninja-build pkg-config bison flex python3 libevent-dev libidn2-dev libcmocka-dev libedit-dev"
# Tests: real clients to talk to pigeond, sanitizer and fuzzer runtimes.
TEST="python3-pytest swaks curl libclang-rt-14-dev llvm python3-aiosmtpd python3-pexpect"
# Checks: formatting, static analysis; Postfix's smtp-sink and smtp-source.
CHECK="git clang-format clang-tools cppcheck postfix"

missing=""
for p in $BUILD $TEST $CHECK; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    # Postfix comes only for its test tools: never configured, never started.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

# pigeond gives up root for this user once its ports are bound.
if ! id pigeon >/dev/null 2>&1; then
    echo "deps: creating the system user pigeon"
    $SUDO useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pigeon
fi
