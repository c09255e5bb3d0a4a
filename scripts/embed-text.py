#!/usr/bin/env python3
"""embed-text.py NAME INPUT OUTPUT - write INPUT as a C string constant NAME.

Used by the build to compile examples/pigeond.conf into pigeond as its
built-in default configuration.
"""
import sys

name, src, dst = sys.argv[1:4]
data = open(src, 'rb').read()
with open(dst, 'w') as out:
    out.write('/* Generated from %s by scripts/embed-text.py; do not edit. */\n' % src.split('/')[-1])
    out.write('const char %s[] =\n' % name)
    for line in data.split(b'\n'):
        text = ''.join(chr(c) if 32 <= c < 127 and c not in (34, 92) else '\\%03o' % c for c in line)
        out.write('    "%s\\n"\n' % text)
    out.write('    ;\n')
