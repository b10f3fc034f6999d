#!/usr/bin/env python3
"""tools/sdk_abi.py on its own (the CTest test "scripts: sdk_abi_tool"): what its hash sees and
what it leaves out, and that its lock cannot record changed headers without a bump. Runs on a copy
of the source tree's headers in a temporary prefix, so it needs no build; the check of the real
installed SDK against framework/sdk_abi.lock is the test "scripts: sdk_abi".

usage: test_sdk_abi.py SOURCE_DIR
"""
import contextlib
import importlib.util
import io
import os
import re
import shutil
import sys
import tempfile

failures = []


def check(condition, what):
    print('%s: %s' % ('ok' if condition else 'FAILED', what))
    if not condition:
        failures.append(what)


def load_tool(source_dir):
    spec = importlib.util.spec_from_file_location('sdk_abi', os.path.join(source_dir, 'tools', 'sdk_abi.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def make_prefix(source_dir, prefix, abi_number=None):
    """PREFIX/include/lab: the source headers and a version.h made from version.h.in, as installed."""
    lab_dir = os.path.join(prefix, 'include', 'lab')
    os.makedirs(lab_dir)
    source_lab = os.path.join(source_dir, 'framework', 'include', 'lab')
    for name in os.listdir(source_lab):
        if name.endswith('.h'):
            shutil.copy(os.path.join(source_lab, name), lab_dir)
    with open(os.path.join(source_lab, 'version.h.in')) as f:
        version_h = f.read().replace('@PROJECT_VERSION@', '0.2.0')
    with open(os.path.join(lab_dir, 'version.h'), 'w') as f:
        f.write(version_h)
    if abi_number is not None:
        set_abi_number(prefix, abi_number)
    return lab_dir


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text, 'test setup: %r not in %s' % (old, path)
    with open(path, 'w') as f:
        f.write(text.replace(old, new, 1))


def set_abi_number(prefix, number):
    path = os.path.join(prefix, 'include', 'lab', 'sdk_abi.h')
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write(re.sub(r'^#define LAB_SDK_ABI \d+$', '#define LAB_SDK_ABI %d' % number, text, flags=re.MULTILINE))


def run_tool(tool, args):
    """(exit code, stdout + stderr) of the tool's main."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = tool.main(args)
    return code, out.getvalue()


def test_what_the_hash_sees(tool, source_dir):
    with open(os.path.join(source_dir, 'framework', 'include', 'lab', 'backend.h')) as f:
        backend_h = f.read()
    base = tool.normalized(backend_h)
    check('class Backend' in base and '//' not in base.replace('"//', ''), 'backend.h normalizes to its tokens')

    # Documentation and layout: comments added and changed, spaces doubled, blank lines, a
    # declaration reflowed onto two lines.
    doc_edit = backend_h.replace('// ', '// Reworded: ', 5).replace('\n', '\n\n', 20)
    doc_edit = doc_edit.replace('class Backend', '/* a block\n   comment */ class   Backend', 1)
    doc_edit = re.sub(r'(virtual \w+)', r'\1\n       ', doc_edit, count=3)
    check(doc_edit != backend_h and tool.normalized(doc_edit) == base, 'comment and whitespace edits keep the hash')

    # Declarations: a virtual inserted mid-vtable, a changed type, a new default argument.
    first_virtual = backend_h.index('    virtual ', backend_h.index('class Backend'))
    inserted = backend_h[:first_virtual] + '    virtual void inserted_hook() {}\n' + backend_h[first_virtual:]
    check(tool.normalized(inserted) != base, 'a virtual inserted into Backend changes the hash')
    retyped = re.sub(r'\bint64_t\b', 'int32_t', backend_h, count=1)
    check(retyped != backend_h and tool.normalized(retyped) != base, 'a changed type (int64_t -> int32_t) changes it')
    check(tool.normalized('void f(int x);') != tool.normalized('void f(int x = 1);'), 'a new default argument changes it')
    check(tool.normalized('struct S { int a; int b; };') != tool.normalized('struct S { int b; int a; };'),
          'reordered members change it')

    # Tokens the comment stripper must not touch, and line ends that matter.
    check(tool.normalized('const char* s = "a // b";') != tool.normalized('const char* s = "a";'),
          '"//" inside a string literal is not a comment')
    check(tool.normalized('const char* s = "a  b";') != tool.normalized('const char* s = "a b";'),
          'spaces inside a string literal are kept')
    check(tool.normalized("char c = '/'; int d; // x") == tool.normalized("char c = '/';\nint d;"),
          'a character literal is a token, the comment after it is not')
    check(tool.normalized('#define X\nint y;') != tool.normalized('#define X int y;'),
          'a directive ends at its line end')
    check(tool.normalized('#define X(a) \\\n    (a + 1)\n') == tool.normalized('#define X(a) (a + 1)\n'),
          'a line continuation joins a directive')

    # The two values that are not ABI.
    check(tool.normalized('#define LAB_VERSION "0.2.0"\n') == tool.normalized('#define LAB_VERSION "0.3.0"\n'),
          'the project version is not hashed')
    check(tool.normalized('#define LAB_SDK_ABI 1\n') == tool.normalized('#define LAB_SDK_ABI 2\n'),
          'the ABI number itself is not hashed (the lock pairs it with the hash)')
    check(tool.normalized('#define LAB_SDK_ABI_X 1\n') != tool.normalized('#define LAB_SDK_ABI_X 2\n'),
          'other defines are hashed with their values')


def test_the_lock(tool, source_dir, scratch):
    prefix = os.path.join(scratch, 'sdk')
    lab_dir = make_prefix(source_dir, prefix, abi_number=4)
    lock = os.path.join(scratch, 'sdk_abi.lock')
    args = ['--prefix', prefix, '--lock', lock]

    code, out = run_tool(tool, args)
    check(code == 1 and 'has no line for LAB_SDK_ABI 4' in out and '--update' in out,
          'check without a lock line fails and says to run --update: ' + out.strip())
    code, out = run_tool(tool, args + ['--update'])
    check(code == 0 and 'recorded SDK ABI 4' in out, 'update records the first line: ' + out.strip())
    code, out = run_tool(tool, args)
    check(code == 0 and 'SDK ABI 4' in out, 'check passes against the recorded line: ' + out.strip())
    code, out = run_tool(tool, args + ['--update'])
    check(code == 0 and 'already recorded' in out, 'update of unchanged headers changes nothing')

    # A documentation edit: still passes.
    edit(os.path.join(lab_dir, 'backend.h'), 'class Backend', '// Explained better.\nclass Backend')
    code, out = run_tool(tool, args)
    check(code == 0, 'a comment added to an installed header keeps the check passing: ' + out.strip())

    # A declaration changed without a bump: the check fails saying how to bump; update refuses.
    edit(os.path.join(lab_dir, 'backend.h'), 'class Backend {', 'class Backend {\npublic:\n    virtual void hook() {}')
    code, out = run_tool(tool, args)
    check(code == 1 and 'changed without an SDK ABI bump' in out and
          'increase LAB_SDK_ABI in framework/include/lab/sdk_abi.h to 5' in out and '--update' in out and
          'say in the commit message what changed' in out,
          'a changed declaration fails the check with the bump instructions: ' + out.strip())
    with open(lock) as f:
        lock_before = f.read()
    code, out = run_tool(tool, args + ['--update'])
    with open(lock) as f:
        lock_after = f.read()
    check(code == 1 and 'refusing to record a new hash under SDK ABI 4' in out and lock_after == lock_before,
          'update refuses a new hash under a recorded number and leaves the lock alone: ' + out.strip())

    # The bump: update appends, the history keeps both lines, the check passes.
    set_abi_number(prefix, 5)
    code, out = run_tool(tool, args + ['--update'])
    check(code == 0 and 'recorded SDK ABI 5' in out, 'after the bump, update records ABI 5: ' + out.strip())
    entries = tool.read_lock(lock)
    check([n for n, _ in entries] == [4, 5] and entries[0][1] != entries[1][1],
          'the lock keeps ABI 4 and ABI 5 with different hashes')
    code, out = run_tool(tool, args)
    check(code == 0, 'the check passes after bump + update: ' + out.strip())

    # The number never goes back, and a damaged lock is refused with its line.
    set_abi_number(prefix, 3)
    code, out = run_tool(tool, args)
    check(code == 1 and 'never goes back' in out, 'a smaller LAB_SDK_ABI than the lock holds fails: ' + out.strip())
    with open(lock, 'a') as f:
        f.write('6 not-a-hash\n')
    code, out = run_tool(tool, args)
    check(code == 1 and "expected '<LAB_SDK_ABI> <sha256>'" in out and 'sdk_abi.lock:' in out,
          'a damaged lock line is named: ' + out.strip())

    # An install without lab/sdk_abi.h (an SDK from before numbered ABIs) is named.
    os.remove(os.path.join(lab_dir, 'sdk_abi.h'))
    code, out = run_tool(tool, args)
    check(code == 1 and 'sdk_abi.h' in out, 'an SDK without lab/sdk_abi.h is refused naming it: ' + out.strip())


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = argv[0]
    tool = load_tool(source_dir)
    test_what_the_hash_sees(tool, source_dir)
    with tempfile.TemporaryDirectory(prefix='lab_test_sdk_abi_') as scratch:
        test_the_lock(tool, source_dir, scratch)
    if failures:
        print('%d check(s) failed' % len(failures))
        return 1
    print('all checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
