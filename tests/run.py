#!/usr/bin/env python3
"""The test runner of `make check`: unit tests (one process per test, ASan/UBSan) and the
build hardening checks, the fuzz targets over their corpora (tests/fuzz/run.py check), the
service supervisor as PID 1 of a pid namespace, then the QEMU scenarios; prints every result and one closing line `N passed, N failed[, N skipped]`.

A SKIP fails the run unless its message starts with "[id] " for an id in tests/skips.py
(the one list of reasons CI's machine cannot meet); --allow-skips (refused when CI=true)
reports such skips without failing. Every program runs under a time limit (LIMITS, times
CVM_TIMEOUT_SCALE, tests/timing.py); one over it is killed with its children and fails."""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import skips  # noqa: E402
import timing  # noqa: E402

RESULT = re.compile(r"^(PASS|FAIL|SKIP) (\S+?):?(?: |$)(.*)")
SKIP_ID = re.compile(r"^\[([a-z0-9-]+)\] ")

# Seconds (unscaled) one program of a layer may run: a backstop for a hang the layer's own
# per-test limit does not catch (the harness's is 60 s a test, the ns layer's 60 s a scenario,
# the QEMU runner's 30 min a scenario). Measured on the shared 2-core host: the slowest unit
# binary (test_release_seal) 21-48 s, the ns layer about 1 min, the QEMU layer about 30 min.
# The fuzz layer: 11 targets, each its corpus plus 5 s of fuzzing, about 1.5 min.
LIMITS = {"unit": 900, "checks": 120, "fuzz": 600, "ns": 600, "qemu": 4 * 3600}


def skip_allowed(message):
    """The listed reason of a SKIP line's message, or None."""
    m = SKIP_ID.match(message)
    return m.group(1) if m and m.group(1) in skips.ALLOWED else None


def run_suite(label, argv, counts, limit, allow_skips):
    """Runs one test program, echoing its output, counting its PASS/FAIL/SKIP lines. A
    program that fails without reporting a failed test, reports no result at all, or
    outlives its limit counts as one failure; so does a SKIP for an unlisted reason."""
    print(f"== {label}", flush=True)
    start = time.monotonic()
    # Its own session: the limit kills whatever it started too (helpers holding the pipe).
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    killed = threading.Event()

    def kill():
        killed.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    timer = threading.Timer(limit, kill)
    timer.start()
    failed_here = results = 0
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            m = RESULT.match(line)
            if not m:
                continue
            kind, name, rest = m.groups()
            results += 1
            if kind == "SKIP" and not skip_allowed(rest):
                if allow_skips:
                    print(f"  (this skip fails CI: no [id] from tests/skips.py)")
                else:
                    print(f"FAIL {name}: skipped, and not for a reason tests/skips.py lists "
                          "(a test that can run here must run)")
                    kind = "FAIL"
            counts[kind] += 1
            failed_here += kind == "FAIL"
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    if killed.is_set():
        print(f"FAIL {label}: no end within {limit:.0f} s (the layer's limit), killed")
        counts["FAIL"] += 1
    elif rc != 0 and failed_here == 0:
        print(f"FAIL {label}: exited with status {rc} without naming a failed test")
        counts["FAIL"] += 1
    elif results == 0:
        print(f"FAIL {label}: reported no result")
        counts["FAIL"] += 1
    print(f"== {label}: {time.monotonic() - start:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("--qemu-only", action="store_true")
    ap.add_argument("--fuzz-only", action="store_true",
                    help="only the fuzz layer (each target over its corpus, briefly)")
    ap.add_argument("-k", help="only QEMU scenarios whose name contains this")
    ap.add_argument("--allow-skips", action="store_true",
                    help="a developer's run: report unlisted skips without failing")
    args = ap.parse_args()
    if args.allow_skips and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        print("run.py: --allow-skips is refused in CI (CI=true): a skip there fails the run")
        return 2

    scale = timing.scale()
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def suite(label, argv, layer):
        run_suite(label, argv, counts, LIMITS[layer] * scale, args.allow_skips)

    only = args.unit_only or args.qemu_only or args.fuzz_only
    if args.unit_only or not only:
        tests = sorted(glob.glob(os.path.join(ROOT, "build/unit/test_*")))
        if not tests:
            print("FAIL unit: no unit test binaries in build/unit (run make unit)")
            counts["FAIL"] += 1
        for t in tests:
            suite(f"unit/{os.path.basename(t)}", [t], "unit")
        # The verdict's own machinery: this runner, the harness, the timing rule.
        suite("selftest", [sys.executable, os.path.join(ROOT, "tests/selftest.py")], "checks")
        # The bench's parsers on recorded console text (no VM).
        suite("bench-parse", [sys.executable, os.path.join(ROOT, "tests/bench/test_bench_parse.py")],
              "checks")
        # The release binary's hardening, read from the ELF file (tests/hardening.py).
        suite("hardening", [sys.executable, os.path.join(ROOT, "tests/hardening.py"),
                            os.path.join(ROOT, "build/cvminit")], "checks")
        # The image's build and launch tooling on the host: make's inputs, run.sh's checks.
        suite("image", [sys.executable, os.path.join(ROOT, "tests/image/run.py")], "checks")
    if args.fuzz_only or not only:
        # Every fuzz target over its corpus (the regression inputs of the crashes found)
        # and a few seconds of fuzzing: a PASS/FAIL fuzz/<target> line each.
        suite("fuzz", [sys.executable, os.path.join(ROOT, "tests/fuzz/run.py"), "check"],
              "fuzz")
    if not only:
        # The supervisor as PID 1 of a pid namespace (STYLE layer 2).
        suite("ns", [sys.executable, os.path.join(ROOT, "tests/ns/run.py")], "ns")
    if args.qemu_only or not only:
        # --strict: a missing build/cvminit or kernel fails instead of skipping.
        argv = [sys.executable, os.path.join(ROOT, "tests/qemu/run.py"), "--strict"]
        if args.k:
            argv += ["-k", args.k]
        suite("qemu", argv, "qemu")

    line = f"{counts['PASS']} passed, {counts['FAIL']} failed"
    if counts["SKIP"]:
        line += f", {counts['SKIP']} skipped"
    print(line)
    return 1 if counts["FAIL"] or not counts["PASS"] else 0


if __name__ == "__main__":
    sys.exit(main())
