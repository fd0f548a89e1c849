#!/usr/bin/env python3
"""Tests of the verdict itself (run by tests/run.py in the unit layer): the runner fails an
unlisted skip, a hung program and a silent one; the harness kills a test over its limit and
puts the SKIP reason on its line; CVM_TIMEOUT_SCALE is one checked rule; each hardening check
fails on a binary without its property. Prints PASS/FAIL lines and `N passed, N failed`."""
import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import hardening  # noqa: E402
import timing  # noqa: E402

spec = importlib.util.spec_from_file_location("runner", os.path.join(ROOT, "tests/run.py"))
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)


def suite(script, limit=20, allow_skips=False):
    """counts and output of runner.run_suite over a shell script."""
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runner.run_suite("fake", ["sh", "-c", script], counts, limit, allow_skips)
    return counts, out.getvalue()


def runner_unlisted_skip_fails():
    counts, out = suite("echo 'SKIP a: swtpm is not installed'; echo 'PASS b'")
    assert counts == {"PASS": 1, "FAIL": 1, "SKIP": 0}, (counts, out)
    counts, out = suite("echo 'SKIP a: [no-such-id] why'")
    assert counts["FAIL"] == 1, (counts, out)


def runner_listed_skip_counts_as_skip():
    saved = dict(runner.skips.ALLOWED)
    runner.skips.ALLOWED["selftest-reason"] = "a reason only this test lists"
    try:
        counts, out = suite("echo 'SKIP a: [selftest-reason] why'")
    finally:
        runner.skips.ALLOWED.clear()
        runner.skips.ALLOWED.update(saved)
    assert counts == {"PASS": 0, "FAIL": 0, "SKIP": 1}, (counts, out)


def runner_allow_skips_reports_them():
    counts, out = suite("echo 'SKIP a: needs root'", allow_skips=True)
    assert counts == {"PASS": 0, "FAIL": 0, "SKIP": 1}, (counts, out)
    assert "fails CI" in out, out
    env = dict(os.environ, CI="true")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/run.py"), "--unit-only",
                        "--allow-skips"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "refused in CI" in r.stdout, (r.returncode, r.stdout)


def runner_kills_a_hung_program_and_its_helpers():
    with tempfile.TemporaryDirectory() as d:
        mark = os.path.join(d, "helper-ran-on")
        t0 = time.monotonic()
        counts, out = suite(f"echo 'PASS a'; (sleep 3; touch {mark}) & sleep 60", limit=1)
        took = time.monotonic() - t0
        assert counts["FAIL"] == 1 and "killed" in out, (counts, out)
        assert took < 10, took
        time.sleep(3.5)
        assert not os.path.exists(mark), "the helper outlived the limit"


def runner_silent_or_crashed_program_fails():
    counts, out = suite("true")
    assert counts["FAIL"] == 1 and "no result" in out, (counts, out)
    counts, out = suite("echo 'PASS a'; exit 3")
    assert counts["FAIL"] == 1 and "status 3" in out, (counts, out)


HARNESS_PROG = r"""
#include <unistd.h>
#include "harness.h"
TEST(passes) { CHECK_INT(1 + 1, 2); }
TEST_LIMIT(hangs, 1)
{
	if (fork() == 0)
		execlp("sh", "sh", "-c", "sleep 3; touch \"$MARK\"", (char *)NULL);
	for (;;)
		pause();
}
TEST(skips) { SKIP("[some-id] %s is missing", "thing"); }
"""


def harness_limit_and_skip_reason():
    with tempfile.TemporaryDirectory() as d:
        src, exe, mark = (os.path.join(d, n) for n in ("t.c", "t", "mark"))
        open(src, "w").write(HARNESS_PROG)
        subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                        "-Wno-missing-prototypes", "-I", os.path.join(ROOT, "tests/unit"),
                        "-o", exe, src, os.path.join(ROOT, "tests/unit/harness.c")],
                       check=True, capture_output=True, timeout=120)
        env = dict(os.environ, MARK=mark, CVM_TIMEOUT_SCALE="2")
        t0 = time.monotonic()
        r = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
        lines = r.stdout.splitlines()
        assert lines == ["PASS passes",
                         "FAIL hangs: no result within 2 s (its time limit), killed",
                         "SKIP skips: [some-id] thing is missing",
                         "1 passed, 1 failed, 1 skipped"], lines
        assert r.returncode == 1 and 1.5 < took < 10, (r.returncode, took)
        time.sleep(3.5)
        assert not os.path.exists(mark), "the hung test's helper outlived its limit"
        r = subprocess.run([exe, "passes"], env=dict(os.environ, CVM_TIMEOUT_SCALE="x"),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r


def timing_scale_rule():
    saved = os.environ.get(timing.ENV)
    try:
        os.environ[timing.ENV] = "2.5"
        assert timing.scaled(0.3) == 0.75
        for bad in ("0", "-1", "x", "nan", "inf"):
            os.environ[timing.ENV] = bad
            try:
                timing.scale()
            except SystemExit:
                continue
            raise AssertionError(f"{timing.ENV}={bad} accepted")
        del os.environ[timing.ENV]
        assert timing.scaled(4) == 4
    finally:
        if saved is None:
            os.environ.pop(timing.ENV, None)
        else:
            os.environ[timing.ENV] = saved


def hardening_checks_can_fail():
    """A dynamic, unstripped, lazily bound, executable-stack, unprotected binary fails every
    check but the CET claim (which depends on the README)."""
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "t.c"), os.path.join(d, "t")
        open(src, "w").write("int main(void) { return 0; }\n")
        subprocess.run(["gcc", "-g", "-fno-stack-protector", "-Wl,-z,lazy", "-Wl,-z,execstack",
                        "-o", exe, src], check=True, capture_output=True, timeout=120)
        for name, fn in hardening.CHECKS:
            if name == "cet_claim":
                continue
            try:
                fn(exe)
            except hardening.Fail:
                continue
            raise AssertionError(f"hardening/{name} passed on a binary without it")


TESTS = [
    runner_unlisted_skip_fails,
    runner_listed_skip_counts_as_skip,
    runner_allow_skips_reports_them,
    runner_kills_a_hung_program_and_its_helpers,
    runner_silent_or_crashed_program_fails,
    harness_limit_and_skip_reason,
    timing_scale_rule,
    hardening_checks_can_fail,
]


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
        except Exception as e:  # any error fails the test
            print(f"FAIL selftest/{fn.__name__}: {type(e).__name__}: {e}", flush=True)
            failed += 1
        else:
            print(f"PASS selftest/{fn.__name__}", flush=True)
            passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
