#!/usr/bin/env python3
"""Data-parallel training under mpirun, against one process (issue 15).

  equivalence   mpirun -np 2 (1 thread per rank) and one process (1 thread) give the same loss
                and gradient-norm curves: every logged step within 1e-5 relative, 50 steps of a
                small GPT; so do micro-batches (gradient accumulation) in one process and on 2 ranks.
  wrong sum     the same comparison fails when the all-reduce leaves out its division by N
                (LAB_FAULT=allreduce_sum): the test can tell a wrong reduction.
  rank fails    a rank that throws (LAB_FAULT=fail:1:S) ends the run on every rank; rank 0 records
                it failed, naming the rank and its error.
  rank killed   SIGKILL to rank 1 mid-run: mpirun stops the other rank, the database is intact
                and the run is interrupted or failed, never running; `labrun --resume` on one
                process finishes it.
  stop signal   SIGINT to mpirun: every rank stops after the same step, rank 0 checkpoints and
                marks the run interrupted; --resume on 2 ranks finishes it.

Usage: test_data_parallel.py BUILD_DIR SOURCE_DIR. Prints "skipped: <why>" (ctest's skip
pattern) without mpirun or without a labrun built with MPI.
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

build, source = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
labrun = os.path.join(build, "bin", "labrun")
data = os.path.join(source, "data")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"]

failures = []


def fail(text):
    print("FAIL: " + text)
    failures.append(text)


def skip(why):
    print("skipped: " + why)
    sys.exit(0)


if shutil.which("mpirun") is None:
    skip("mpirun is not installed (tools/setup.sh installs openmpi-bin)")
version = subprocess.run([labrun, "--version"], capture_output=True, text=True).stdout
if "data-parallel training: not built" in version:
    skip("this labrun was built without MPI (" + version.strip().splitlines()[-1] + ")")
if not os.path.exists(os.path.join(data, "tinyshakespeare", "input.txt")):
    skip("no data/tinyshakespeare; run tools/get_data.sh --from ../shared/data first")

scratch = tempfile.mkdtemp(prefix="lab_dp_")
# A small character GPT (2 layers, 64 wide), 50 steps logged every 5, 1 thread per process.
BASE = [os.path.join(source, "experiments", "shakespeare_char.ini"),
        "train.steps=50", "train.log_every=5", "train.eval_every=0", "train.eval_at_end=false",
        "task.sample_tokens=0", "task.val_tokens=2048", "model.layers=2", "model.hidden=64", "model.heads=2",
        "backend.threads=1", "--no-progress", "--data-dir", data]


def run(args, env_extra=None, mpi=False, check=True, timeout=300):
    env = dict(os.environ)
    env.update(env_extra or {})
    cmd = (MPIRUN if mpi else []) + [labrun] + args
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=scratch)
    if check and p.returncode != 0:
        fail("`%s` exited %d:\n%s" % (" ".join(cmd), p.returncode, (p.stdout + p.stderr)[-3000:]))
    return p


def curves(db, run_id=None):
    with sqlite3.connect(db) as c:
        if run_id is None:
            run_id = c.execute("SELECT max(id) FROM runs").fetchone()[0]
        out = {}
        for name in ("train/loss", "train/grad_norm"):
            out[name] = dict(c.execute("SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step",
                                       (run_id, name)).fetchall())
        return out


def run_row(db, columns):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT %s FROM runs ORDER BY id DESC LIMIT 1" % columns).fetchone()


def largest_difference(a, b):
    """The largest relative difference of two runs' curves, and where; None when steps differ."""
    worst = (0.0, None)
    for name in a:
        if sorted(a[name]) != sorted(b[name]) or not a[name]:
            return None
        for step, x in a[name].items():
            rel = abs(x - b[name][step]) / max(abs(x), 1e-30)
            if rel > worst[0]:
                worst = (rel, "%s at step %d: %.8g vs %.8g" % (name, step, x, b[name][step]))
    return worst


def table(title, a, b):
    print(title)
    print("  step   loss (first)   loss (second)  grad_norm (first)  grad_norm (second)")
    for step in sorted(a["train/loss"]):
        print("  %4d   %.7f      %.7f      %.7f          %.7f" % (step, a["train/loss"][step], b["train/loss"].get(step, float("nan")),
                                                            a["train/grad_norm"][step], b["train/grad_norm"].get(step, float("nan"))))


TOLERANCE = 1e-5


def expect_equal(label, db_a, db_b):
    a, b = curves(db_a), curves(db_b)
    worst = largest_difference(a, b)
    if worst is None:
        fail(label + ": the two runs logged different steps")
        return a, b
    print("%s: largest relative difference %.2e (%s)" % (label, worst[0], worst[1]))
    if worst[0] > TOLERANCE:
        fail("%s: %s differs by %.2e relative > %g" % (label, worst[1], worst[0], TOLERANCE))
    return a, b


try:
    # ---- equivalence: one process vs 2 ranks, and micro-batches ----
    one = os.path.join(scratch, "one.db")
    two = os.path.join(scratch, "two.db")
    run(BASE + ["experiment.db=" + one])
    run(BASE + ["experiment.db=" + two], mpi=True)
    a, b = expect_equal("1 process vs 2 ranks", one, two)
    table("loss curves, 1 process (first) and 2 ranks (second):", a, b)
    world, comm, threads = run_row(two, "world_size, communicator, threads")
    if (world, comm, threads) != (2, "mpi", 1):
        fail("the 2-rank run records world_size %r, communicator %r, threads %r; expected 2, 'mpi', 1" % (world, comm, threads))
    with sqlite3.connect(two) as c:
        tokens = c.execute("SELECT value FROM metrics WHERE name = 'perf/tokens_per_s' ORDER BY step LIMIT 1").fetchone()
    if tokens is None or tokens[0] <= 0:
        fail("the 2-rank run records no perf/tokens_per_s")

    micro_one = os.path.join(scratch, "micro_one.db")
    micro_two = os.path.join(scratch, "micro_two.db")
    # micro_batch is part of the configuration; the reference is one process with the same value.
    run(BASE + ["train.micro_batch=4", "experiment.db=" + micro_one])
    expect_equal("micro_batch 4 (3 parts) vs the whole batch, 1 process", one, micro_one)
    run(BASE + ["train.micro_batch=4", "experiment.db=" + micro_two], mpi=True)
    expect_equal("micro_batch 4 on 2 ranks (2 parts each: 4 + 2) vs 1 process", micro_one, micro_two)

    # ---- a wrong reduction is caught ----
    wrong = os.path.join(scratch, "wrong.db")
    run(BASE + ["experiment.db=" + wrong], env_extra={"LAB_FAULT": "allreduce_sum"}, mpi=True)
    worst = largest_difference(curves(one), curves(wrong))
    print("with the all-reduce not divided by N: largest relative difference %.2e (%s)" % (worst[0], worst[1]))
    if worst[0] <= TOLERANCE:
        fail("a sum not divided by N stayed within %g of one process: the comparison cannot tell" % TOLERANCE)

    # ---- a rank that fails ----
    failed_db = os.path.join(scratch, "failed.db")
    p = run(BASE + ["experiment.db=" + failed_db], env_extra={"LAB_FAULT": "fail:1:7"}, mpi=True, check=False)
    status, error = run_row(failed_db, "status, error")
    print("rank 1 fails at step 7: exit %d, run %s: %s" % (p.returncode, status, error))
    if p.returncode == 0 or status != "failed" or "rank 1: LAB_FAULT: rank 1 fails at step 7" not in (error or ""):
        fail("a failing rank 1: expected a failed run naming rank 1 and its error; got exit %d, %s: %s" % (p.returncode, status, error))
    if curves(failed_db)["train/loss"] and max(curves(failed_db)["train/loss"]) > 5:
        fail("the failed run logged steps after step 7")

    # ---- a rank killed mid-run ----
    killed = os.path.join(scratch, "killed.db")
    long_run = BASE + ["train.steps=1000", "train.ckpt_every=10", "experiment.db=" + killed]
    mpirun = subprocess.Popen(MPIRUN + [labrun] + long_run, cwd=scratch, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)

    def logged_steps(db):
        try:
            with sqlite3.connect(db, timeout=5) as c:
                return c.execute("SELECT coalesce(max(step), 0) FROM metrics WHERE name = 'train/loss'").fetchone()[0]
        except sqlite3.Error:
            return 0

    def rank_pid(rank):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if (b"OMPI_COMM_WORLD_RANK=%d" % rank) in env and cmd[0].endswith(b"labrun") and killed.encode() in b" ".join(cmd):
                return int(pid)
        return None

    deadline = time.time() + 120
    while logged_steps(killed) < 30 and time.time() < deadline and mpirun.poll() is None:
        time.sleep(0.2)
    victim = rank_pid(1)
    at = logged_steps(killed)
    if victim is None:
        fail("could not find rank 1's process")
        mpirun.kill()
    else:
        os.kill(victim, signal.SIGKILL)
    try:
        out, _ = mpirun.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        mpirun.kill()
        out, _ = mpirun.communicate()
        fail("mpirun did not end within 60 s of rank 1's death")
    with sqlite3.connect(killed) as c:
        integrity = c.execute("PRAGMA integrity_check").fetchone()[0]
    status, error = run_row(killed, "status, error")
    print("rank 1 killed after step %d: mpirun exit %d, database %s, run %s: %s" % (at, mpirun.returncode, integrity, status, error))
    if integrity != "ok":
        fail("the database is damaged after a rank was killed: " + integrity)
    if status not in ("interrupted", "failed"):
        fail("after rank 1 was killed the run is %r, expected interrupted or failed; labrun printed:\n%s" % (status, out[-3000:]))
    uid = run_row(killed, "uid")[0]
    p = run(["--resume", uid, "--db", killed, "--no-progress", "--data-dir", data])
    status = run_row(killed, "status")[0]
    steps = max(curves(killed)["train/loss"])
    print("resumed on 1 process: run %s at step %d" % (status, steps))
    if status != "finished" or steps != 1000:
        fail("--resume on 1 process after the kill: run %s at step %d, expected finished at 1000" % (status, steps))

    # ---- a stop signal: every rank stops after the same step, resumable on 2 ranks ----
    stopped = os.path.join(scratch, "stopped.db")
    # mpirun passes SIGINT on as SIGTERM to every rank odls_base_sigkill_timeout (1 s) later, and
    # SIGKILL as long again after that: the ranks finish their step, agree to stop, and rank 0
    # checkpoints within that second (a small model's checkpoint takes milliseconds).
    mpirun = subprocess.Popen(MPIRUN + [labrun] + BASE + ["train.steps=1000", "train.ckpt_every=50", "experiment.db=" + stopped],
                              cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while logged_steps(stopped) < 20 and time.time() < deadline and mpirun.poll() is None:
        time.sleep(0.2)
    mpirun.send_signal(signal.SIGINT)
    out, _ = mpirun.communicate(timeout=60)
    status, error = run_row(stopped, "status, error")
    print("SIGINT to mpirun: exit %d, run %s: %s" % (mpirun.returncode, status, error))
    if status != "interrupted":
        fail("after SIGINT to mpirun the run is %r, expected interrupted; labrun printed:\n%s" % (status, out[-3000:]))
    uid = run_row(stopped, "uid")[0]
    run(["--resume", uid, "--db", stopped, "--no-progress", "--data-dir", data], mpi=True)
    status = run_row(stopped, "status")[0]
    if status != "finished" or max(curves(stopped)["train/loss"]) != 1000:
        fail("--resume on 2 ranks after SIGINT: run %s, expected finished at step 1000" % status)
finally:
    shutil.rmtree(scratch, ignore_errors=True)

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all data-parallel checks passed")
