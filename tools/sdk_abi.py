#!/usr/bin/env python3
"""Keeps the plugin SDK's ABI number (LAB_SDK_ABI, framework/include/lab/sdk_abi.h) honest.

A compiled plugin sees liblab through the installed headers, lab/*.h: their class layouts,
virtual function order, signatures and inline code. This tool installs those headers from a
configured build (cmake --install --component sdk_headers into a temporary prefix, so what is
hashed is what the SDK really installs, the generated lab/version.h included), hashes them, and
compares the hash with framework/sdk_abi.lock, which records one line per SDK ABI number:

    <LAB_SDK_ABI> <sha256 of the installed headers>

  tools/sdk_abi.py --build build            check: fails when the headers changed without a bump
  tools/sdk_abi.py --build build --update   record the hash of the current LAB_SDK_ABI

--update refuses to record a hash under a number that the lock already holds with another hash,
so the only way to record changed headers is to bump LAB_SDK_ABI first. Old lines are never
changed: the lock is the history of the ABI.

What the hash sees: the C++ tokens of each header, files sorted by name. Comments and the amount
of whitespace between tokens are left out (a documentation or formatting edit needs no bump);
any changed token does change it (a new virtual, a changed type, a new member, a changed default
in inline code). Two values are left out too, because they are not ABI: the project version
(LAB_VERSION in version.h, a release can keep the ABI) and the number LAB_SDK_ABI itself (the
lock pairs it with the hash). Standard library only: python3 and cmake, nothing from pip.
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LOCK = os.path.join(SOURCE_DIR, 'framework', 'sdk_abi.lock')
ABI_HEADER = 'framework/include/lab/sdk_abi.h'
# The install component of lab/*.h and the generated lab/version.h (framework/CMakeLists.txt).
HEADER_COMPONENT = 'sdk_headers'
# #define lines whose value is left out of the hash, with what stands in for it.
MASKED_DEFINES = {'LAB_VERSION': '<project version>', 'LAB_SDK_ABI': '<sdk abi>'}

LOCK_HEADER = """\
# The plugin SDK's ABI history: LAB_SDK_ABI (framework/include/lab/sdk_abi.h) -> sha256 of the
# installed SDK headers (lab/*.h, comments and whitespace left out), one line per ABI, oldest first.
# Written by tools/sdk_abi.py --update and checked by the CTest test "scripts: sdk_abi"; a recorded
# line is never changed. To change the headers: bump LAB_SDK_ABI, run the tool with --update.
"""


class AbiError(Exception):
    """A check that failed or an input that is wrong; the message says what to do."""


# ---- the hash ----

_TOKEN = re.compile(r'''
    (?P<raw>R"(?P<delim>[^()\\\s]{0,16})\(.*?\)(?P=delim)")   # raw string literal
  | (?P<string>"(?:\\.|[^"\\\n])*")                           # string literal
  | (?P<char>'(?:\\.|[^'\\\n])*')                             # character literal
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<newline>\n)
  | (?P<space>[ \t\r\f\v]+)
  | (?P<word>[A-Za-z0-9_.]+)                                  # identifiers and numbers
  | (?P<punct>.)
''', re.VERBOSE | re.DOTALL)


def normalized(text):
    """The header's tokens one space apart, comments dropped, each preprocessor directive on a line
    of its own (a directive ends at its line's end, so line breaks there are meaningful)."""
    text = text.replace('\\\r\n', ' ').replace('\\\n', ' ')  # line continuations: one logical line
    out = []  # one list of tokens per logical unit (a directive, or the code between directives)
    current = []
    in_directive = False
    at_line_start = True
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == 'delim':
            kind = 'raw'
        token = match.group(0)
        if kind == 'newline':
            if in_directive:
                out.append(current)
                current = []
                in_directive = False
            at_line_start = True
            continue
        if kind in ('space', 'line_comment', 'block_comment'):
            continue  # a comment separates tokens as whitespace does
        if at_line_start and token == '#':
            if current:
                out.append(current)
            current = []
            in_directive = True
        at_line_start = False
        current.append(token)
    if current:
        out.append(current)
    lines = []
    for tokens in out:
        if len(tokens) >= 3 and tokens[0] == '#' and tokens[1] == 'define' and tokens[2] in MASKED_DEFINES:
            tokens = tokens[:3] + [MASKED_DEFINES[tokens[2]]]
        lines.append(' '.join(tokens))
    return '\n'.join(lines) + '\n'


def headers_hash(include_dir):
    """sha256 over every lab/*.h in include_dir/lab, sorted by name, each normalized."""
    lab_dir = os.path.join(include_dir, 'lab')
    names = sorted(n for n in os.listdir(lab_dir) if n.endswith('.h')) if os.path.isdir(lab_dir) else []
    if not names:
        raise AbiError("no headers in '%s'; is that an installed SDK's include folder?" % lab_dir)
    digest = hashlib.sha256()
    for name in names:
        with open(os.path.join(lab_dir, name), encoding='utf-8') as f:
            digest.update(('== %s\n' % name).encode('utf-8'))
            digest.update(normalized(f.read()).encode('utf-8'))
    return digest.hexdigest(), names


def installed_abi_number(include_dir):
    path = os.path.join(include_dir, 'lab', 'sdk_abi.h')
    try:
        with open(path, encoding='utf-8') as f:
            found = re.findall(r'^#define LAB_SDK_ABI (\d+)\s*$', f.read(), re.MULTILINE)
    except OSError as e:
        raise AbiError("cannot read '%s' (%s); the SDK installs lab/sdk_abi.h, is the build folder "
                       "configured from this tree?" % (path, e.strerror))
    if len(found) != 1:
        raise AbiError("'%s' must hold exactly one line '#define LAB_SDK_ABI <number>' (found %d); "
                       "keep the number on that line alone" % (path, len(found)))
    return int(found[0])


def install_headers(build_dir, prefix):
    """cmake --install of the SDK headers alone, so no other target has to be built."""
    if not os.path.isfile(os.path.join(build_dir, 'cmake_install.cmake')):
        raise AbiError("'%s' is not a configured labrun build folder (no cmake_install.cmake); pass "
                       "--build <the folder you ran cmake in>" % build_dir)
    result = subprocess.run(['cmake', '--install', build_dir, '--prefix', prefix, '--component', HEADER_COMPONENT],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if result.returncode != 0:
        raise AbiError("cmake --install %s --component %s failed:\n%s" % (build_dir, HEADER_COMPONENT, result.stdout))
    return os.path.join(prefix, 'include')


# ---- the lock ----

def read_lock(path):
    """[(number, hash)] in file order; comments and blank lines skipped."""
    entries = []
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return entries
    for line_number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        fields = stripped.split()
        if len(fields) != 2 or not fields[0].isdigit() or not re.fullmatch(r'[0-9a-f]{64}', fields[1]):
            raise AbiError("%s:%d: expected '<LAB_SDK_ABI> <sha256>', got '%s'; restore the line from git "
                           "(recorded lines are never edited)" % (path, line_number, stripped))
        entries.append((int(fields[0]), fields[1]))
    numbers = [n for n, _ in entries]
    if numbers != sorted(set(numbers)):
        raise AbiError("%s: the ABI numbers must be increasing, one line each (got %s); restore the file from git"
                       % (path, ', '.join(map(str, numbers))))
    return entries


def bump_instructions(number, source, lock_path):
    return ("increase LAB_SDK_ABI in %s to %d, run `python3 tools/sdk_abi.py %s --update` (it appends "
            "'%d <hash>' to %s), and say in the commit message what changed in the headers and that plugins "
            "must be rebuilt" % (ABI_HEADER, number + 1, source, number + 1, lock_path))


def check(entries, number, digest, lock_path, source):
    """Returns the line to print on success; raises AbiError with the fix otherwise."""
    recorded = dict(entries)
    newest = max(recorded) if recorded else None
    if newest is not None and number < newest:
        raise AbiError("LAB_SDK_ABI is %d but %s already records ABI %d; the number never goes back: set it "
                       "back to %d in %s, or bump it to %d" % (number, lock_path, newest, newest, ABI_HEADER, newest + 1))
    if number not in recorded:
        raise AbiError("%s has no line for LAB_SDK_ABI %d (the headers hash to %s); record it: run "
                       "`python3 tools/sdk_abi.py %s --update` and commit the lock with the bump"
                       % (lock_path, number, digest, source))
    if recorded[number] != digest:
        raise AbiError("the installed SDK headers changed without an SDK ABI bump: %s records ABI %d as %s, but "
                       "the headers installed by `%s` hash to %s (comments and whitespace are not hashed, so a "
                       "declaration, type, macro or inline body changed; `git diff -- framework/include/lab` "
                       "shows it). A plugin compiled against the old headers would still load and call the wrong "
                       "code. Fix: %s"
                       % (lock_path, number, recorded[number], source, digest,
                          bump_instructions(number, source, lock_path)))
    return "SDK ABI %d: the installed headers hash to %s, as %s records" % (number, digest, lock_path)


def update(entries, number, digest, lock_path, source):
    """Appends 'number digest' to the lock; refuses a number recorded with another hash."""
    recorded = dict(entries)
    if recorded.get(number) == digest:
        return "SDK ABI %d is already recorded with this hash in %s; nothing to do" % (number, lock_path)
    if number in recorded:
        raise AbiError("refusing to record a new hash under SDK ABI %d: %s already records it as %s (these "
                       "headers hash to %s). Changed headers need a new number: %s"
                       % (number, lock_path, recorded[number], digest, bump_instructions(number, source, lock_path)))
    newest = max(recorded) if recorded else None
    if newest is not None and number < newest:
        raise AbiError("refusing to record SDK ABI %d: %s already goes up to %d; set LAB_SDK_ABI in %s to %d"
                       % (number, lock_path, newest, ABI_HEADER, newest + 1))
    was_new = not os.path.exists(lock_path)
    with open(lock_path, 'a', encoding='utf-8') as f:
        if was_new:
            f.write(LOCK_HEADER)
        f.write('%d %s\n' % (number, digest))
    return "recorded SDK ABI %d -> %s in %s" % (number, digest, lock_path)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog='See docs/writing-a-plugin.md, "What the SDK ABI version promises".')
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument('--build', help='a configured labrun build folder; its SDK headers are installed into a '
                                       'temporary prefix and hashed')
    where.add_argument('--prefix', help='an installed SDK (PREFIX/include/lab/*.h) to hash as it is')
    parser.add_argument('--lock', default=DEFAULT_LOCK, help='the lock file (default: %(default)s)')
    parser.add_argument('--update', action='store_true',
                        help='record the hash of the current LAB_SDK_ABI instead of checking it')
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix='lab_sdk_abi_') as scratch:
            include_dir = (install_headers(os.path.abspath(args.build), scratch) if args.build
                           else os.path.join(args.prefix, 'include'))
            number = installed_abi_number(include_dir)
            digest, names = headers_hash(include_dir)
        entries = read_lock(args.lock)
        source = '--build ' + args.build if args.build else '--prefix ' + args.prefix
        if args.update:
            print(update(entries, number, digest, args.lock, source))
        else:
            print(check(entries, number, digest, args.lock, source))
        print("(%d headers in lab/: %s ... %s)" % (len(names), names[0], names[-1]))
    except AbiError as e:
        print('sdk_abi: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
