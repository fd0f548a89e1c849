#!/usr/bin/env python3
"""The test runner of `make check`: unit tests (one process per test, ASan/UBSan), the
service supervisor as PID 1 of a pid namespace, then the QEMU scenarios; prints every result and one closing line `N passed, N failed`."""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = re.compile(r"^(PASS|FAIL|SKIP) (\S+)")


def run_suite(label, argv, counts):
    """Runs one test program, echoing its output, counting its PASS/FAIL/SKIP lines. A
    program that fails without reporting a failed test counts as one failure."""
    print(f"== {label}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    failed_here = 0
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        m = RESULT.match(line)
        if m:
            kind = m.group(1)
            counts[kind] += 1
            failed_here += kind == "FAIL"
    rc = proc.wait()
    if rc != 0 and failed_here == 0:
        print(f"FAIL {label}: exited with status {rc} without naming a failed test")
        counts["FAIL"] += 1
    print(f"== {label}: {time.monotonic() - start:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("--qemu-only", action="store_true")
    ap.add_argument("-k", help="only QEMU scenarios whose name contains this")
    args = ap.parse_args()

    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    if not args.qemu_only:
        tests = sorted(glob.glob(os.path.join(ROOT, "build/unit/test_*")))
        if not tests:
            print("FAIL unit: no unit test binaries in build/unit (run make unit)")
            counts["FAIL"] += 1
        for t in tests:
            run_suite(f"unit/{os.path.basename(t)}", [t], counts)
    if not args.unit_only and not args.qemu_only:
        # The supervisor as PID 1 of a pid namespace (STYLE layer 2).
        run_suite("ns", [sys.executable, os.path.join(ROOT, "tests/ns/run.py")], counts)
    if not args.unit_only:
        # --strict: a missing build/cvminit or kernel fails instead of skipping.
        argv = [sys.executable, os.path.join(ROOT, "tests/qemu/run.py"), "--strict"]
        if args.k:
            argv += ["-k", args.k]
        run_suite("qemu", argv, counts)

    line = f"{counts['PASS']} passed, {counts['FAIL']} failed"
    if counts["SKIP"]:
        line += f", {counts['SKIP']} skipped"
    print(line)
    return 1 if counts["FAIL"] or not counts["PASS"] else 0


if __name__ == "__main__":
    sys.exit(main())
