#!/usr/bin/env python3
"""Layer 2: the service supervisor as PID 1 of a pid namespace (build/ns/svc_pid1, the real
supervise loop with ASan/UBSan). Each scenario writes a config of small test services
(tests/ns/svc/), runs the driver under `unshare --pid --fork --mount --mount-proc` with
its cgroups under a scratch cgroup2 directory, reads its console log and prints
`PASS name` or `FAIL name: why`, then `N passed, N failed`. Needs root and a writable
cgroup2 mount. Usage: tests/ns/run.py [-k SUBSTRING] [--keep]

Every scenario also checks the supervisor itself: no sanitizer report on its stderr or
console, PID 1 still alive at the end (unless the scenario powers it off), and PID 1 powering
off when told to (SIGTERM). Each scenario has a time limit (SCENARIO_LIMIT), and every fixed
delay, timeout and tolerance goes through timing.scaled() (CVM_TIMEOUT_SCALE)."""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from timing import scaled  # noqa: E402

DRIVER = os.path.join(ROOT, "build/ns/svc_pid1")
SVC = os.path.join(ROOT, "tests/ns/svc")
LINE = re.compile(r"^\[\s*(\d+\.\d+)\] cvminit: (.*)$")
# Seconds (unscaled) one scenario may take, its checks of the supervisor included.
SCENARIO_LIMIT = 60
# What ASan, LSan and UBSan print when they find something (the driver is built with them).
SANITIZER = re.compile(r"ERROR: \w*Sanitizer|SUMMARY: \w*Sanitizer|runtime error:|"
                       r"AddressSanitizer|LeakSanitizer")
# The scenarios that power the node off themselves (and check how it ended).
# Scenarios that end PID 1 themselves, and the signal its reboot(2) ends the namespace by.
ENDS_ITSELF = {"exhausted_poweroff": signal.SIGINT, "exhausted_reboot": signal.SIGHUP,
               "exhausted_halt": signal.SIGINT, "shutdown_order": signal.SIGINT}


class Fail(Exception):
    pass


def cgroup2_root():
    """The first writable cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    hybrid host)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                path = left.split()[4]
                if os.access(path, os.W_OK):
                    return path
    return None


def remove_cgroup(path):
    """Kills whatever is left in a cgroup tree and removes it, deepest first."""
    if not os.path.isdir(path):
        return
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        try:
            with open(os.path.join(dirpath, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
        end = time.monotonic() + scaled(1.0)
        while True:
            try:
                os.rmdir(dirpath)
                break
            except OSError:
                if time.monotonic() > end:
                    break
                time.sleep(0.02)


class Node:
    """One run of the driver: a scratch dir, a scratch cgroup, the namespace's PID 1."""

    def __init__(self, name, config, keep=False):
        self.name = name
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix=f"cvminit-ns-{name}-")
        self.cgroup = os.path.join(CGROOT, f"cvminit-test-{os.getpid()}-{name}")
        os.mkdir(self.cgroup)
        self.logdir = os.path.join(self.dir, "log")
        os.mkdir(self.logdir)
        self.kmsg = self.path("kmsg")
        self.console = self.path("console")
        open(self.kmsg, "w").close()
        open(self.console, "w").close()
        self.conf = self.path("cvminit.conf")
        with open(self.conf, "w") as f:
            f.write(config.replace("@DIR@", self.dir).replace("@SVC@", SVC))
        self.stderr = open(self.path("stderr"), "w")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", DRIVER, self.conf,
             self.cgroup, self.logdir, self.kmsg, self.console],
            stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)
        self.pid1 = self._child_of(self.proc.pid)
        self.ns = os.readlink(f"/proc/{self.pid1}/ns/pid")

    def path(self, name):
        return os.path.join(self.dir, name)

    @staticmethod
    def _child_of(pid):
        end = time.monotonic() + scaled(2.0)
        while time.monotonic() < end:
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                pass
            time.sleep(0.01)
        raise Fail("the driver did not start")

    def lines(self):
        out = []
        with open(self.console, errors="replace") as f:
            for line in f:
                m = LINE.match(line.rstrip("\n"))
                if m:
                    out.append((float(m.group(1)), m.group(2)))
        return out

    def find(self, pattern, after=None):
        """All (time, message, match) whose message matches, at or after a time."""
        rx = re.compile(pattern)
        res = []
        for t, msg in self.lines():
            m = rx.search(msg)
            if m and (after is None or t >= after):
                res.append((t, msg, m))
        return res

    def wait(self, pattern, timeout=10.0, count=1, after=None):
        """Waits until pattern has matched count times; returns the last match. The
        timeout is scaled (timing.scaled)."""
        timeout = scaled(timeout)
        end = time.monotonic() + timeout
        while True:
            found = self.find(pattern, after)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > end:
                raise Fail(f"no {count}x /{pattern}/ within {timeout} s")
            if self.proc.poll() is not None:
                found = self.find(pattern, after)
                if len(found) >= count:
                    return found[count - 1]
                raise Fail(f"driver ended ({self.proc.returncode}) before /{pattern}/")
            time.sleep(0.05)

    def ns_procs(self):
        """(host pid, ns pid, state) of every process in the namespace."""
        res = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{p}/ns/pid") != self.ns:
                    continue
                with open(f"/proc/{p}/status") as f:
                    st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
                res.append((int(p), int(st["NSpid"].split()[-1]), st["State"][0]))
            except (OSError, KeyError, ValueError):
                continue
        return res

    def host_pid(self, nspid):
        for host, ns, _ in self.ns_procs():
            if ns == nspid:
                return host
        raise Fail(f"no process {nspid} in the namespace")

    def signal_pid1(self, sig):
        os.kill(self.pid1, sig)

    def sanitizer_report(self):
        """The first lines of a sanitizer report in the driver's stderr or console (with no
        /dev/console, svc_pid1 sends its stderr there), or None."""
        for name in ("stderr", "console"):
            self.stderr.flush()
            text = open(self.path(name), errors="replace").read()
            m = SANITIZER.search(text)
            if m:
                return f"{name}: " + text[m.start():m.start() + 400].replace("\n", " | ")
        return None

    def pid1_alive(self):
        """Whether the namespace's init is still running (not ended, not a zombie)."""
        if self.proc.poll() is not None:
            return False
        return any(ns == 1 and state != "Z" for _, ns, state in self.ns_procs())

    def check_supervisor(self, ends_itself):
        """After a scenario's own checks: PID 1 was alive to the end (or powered off by the
        scenario, with -SIGINT), powers off when told to, and reported no sanitizer error."""
        try:
            self._check_end(ends_itself)
        except Fail as e:
            report = self.sanitizer_report()
            raise Fail(f"{e}; sanitizer report from PID 1: {report}" if report else str(e))
        report = self.sanitizer_report()
        check(report is None, f"sanitizer report from PID 1: {report}")

    def _check_end(self, ends_itself):
        if ends_itself:
            check(self.proc.poll() is not None and self.proc.returncode == -ends_itself,
                  f"the scenario should have ended PID 1 by {ends_itself.name}; unshare: "
                  f"{self.proc.poll()}")
        else:
            check(self.pid1_alive(), "PID 1 of the namespace died during the scenario "
                  f"(unshare ended with {self.proc.poll()})")
            t0 = time.monotonic()
            self.signal_pid1(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=scaled(20))
            except subprocess.TimeoutExpired:
                raise Fail(f"PID 1 did not power off within {scaled(20):.0f} s of SIGTERM")
            check(rc == -signal.SIGINT, f"after SIGTERM unshare ended with {rc}, expected "
                  "-SIGINT (PID 1 powering off)")
            check(self.find(r"^shutdown: powering off now", after=None),
                  f"PID 1 ended {time.monotonic() - t0:.1f} s after SIGTERM without "
                  "'shutdown: powering off now'")

    def finish(self, failed):
        if self.proc.poll() is None:
            # The ns init first, so unshare reaps it (killed first, unshare would leave it a
            # zombie of the machine's init), then unshare if it lingers.
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        remove_cgroup(self.cgroup)
        if failed:
            print(f"  -- {self.name}: last console lines ({self.dir}):")
            for line in open(self.console, errors="replace").read().splitlines()[-25:]:
                print(f"  | {line}")
            err = open(self.path("stderr"), errors="replace").read().strip()
            if err:
                print("  | stderr: " + err[-2000:].replace("\n", "\n  | "))
        if not self.keep and not failed:
            shutil.rmtree(self.dir, ignore_errors=True)


def check(cond, why):
    if not cond:
        raise Fail(why)


def near(got, want, tol):
    """got within a tolerance of want; the tolerance is scaled (the delays themselves are
    the supervisor's, not the machine's)."""
    return abs(got - want) <= scaled(tol)


def pause(seconds):
    """A fixed wait of the test (for output to land, for a zombie to appear), scaled."""
    time.sleep(scaled(seconds))


HEADER = "set shutdown_timeout=2\nset log_level=debug\n"
A_AND_B = """
service a
	exec @SVC@/sock_ready.py
	env DELAY=1
	env SOCK=@DIR@/a.sock
	ready socket @DIR@/a.sock
	restart 1 30
service b
	after a
	exec @SVC@/sleeper.sh
"""


def start_order(n):
    ta, _, m = n.wait(r"^a: started \(pid (\d+)\)")
    tb, _, _ = n.wait(r"^b: started \(pid \d+\)")
    tr, msg, mr = n.wait(r"^a: ready \(socket \S+ accepted after (\d+) ms\)")
    check(ta < tr <= tb, f"order a started {ta}, a ready {tr}, b started {tb}")
    check(tr - ta >= 0.9, f"a ready {tr - ta:.2f} s after start; it listens after 1 s")
    check(int(mr.group(1)) >= 900, msg)
    check(tb - tr < scaled(0.5), f"b started {tb - tr:.2f} s after a was ready")
    # a's output went to kmsg and to its log file.
    check("<31>a: sock_ready: listening on" in open(n.kmsg).read(), "a's output not in kmsg")
    n.wait(r"^b: started")
    pause(0.3)
    check("sleeper: up" in open(os.path.join(n.logdir, "b.log")).read(), "b.log lacks b's line")


def restart_dependency(n):
    _, _, m = n.wait(r"^a: started \(pid (\d+)\)")
    n.wait(r"^b: started")
    n.wait(r"^a: ready")
    os.kill(n.host_pid(int(m.group(1))), signal.SIGKILL)
    tk, _, _ = n.wait(r"^a: killed by signal 9")
    n.wait(r"^a: restarting in 1 s \(restart 1 of 10\)")
    n.wait(r"^b: stopping \(SIGTERM to pid \d+\): a is down")
    n.wait(r"^b: killed by signal 15")
    ta2, _, m2 = n.wait(r"^a: started \(pid (\d+)\)", count=2)
    check(near(ta2 - tk, 1.0, 0.3), f"a restarted {ta2 - tk:.2f} s after the kill, not 1 s")
    tr2 = n.wait(r"^a: ready", count=2)[0]
    tb2 = n.wait(r"^b: started", count=2)[0]
    check(tb2 >= tr2, "b started again before a was ready again")
    # Killed again before stable_secs: the delay doubles.
    os.kill(n.host_pid(int(m2.group(1))), signal.SIGKILL)
    tk2 = n.wait(r"^a: killed by signal 9", count=2)[0]
    n.wait(r"^a: restarting in 2 s \(restart 2 of 10\)")
    ta3 = n.wait(r"^a: started", count=3)[0]
    check(near(ta3 - tk2, 2.0, 0.3), f"second restart after {ta3 - tk2:.2f} s, not 2 s")
    n.wait(r"^b: started", count=3)


def exhausted_stop(n):
    n.wait(r"^f: \*\*\* gave up after 3 restarts in a row; on_exhausted stop", timeout=15)
    n.wait(r"^f: \*\*\* left stopped; the node stays up")
    starts = [t for t, _, _ in n.find(r"^f: started")]
    check(len(starts) == 4, f"{len(starts)} starts, expected 4")
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    for got, want in zip(gaps, [1, 2, 4]):
        check(near(got, want, 0.3), f"restart gaps {['%.2f' % g for g in gaps]}, want 1 2 4")
    for k, d in ((1, 1), (2, 2), (3, 4)):
        check(n.find(rf"^f: restarting in {d} s \(restart {k} of 3\)"), f"no restart {k} log")
    pause(0.5)
    check(n.proc.poll() is None, "the driver ended; on_exhausted stop keeps the node up")
    check(n.find(r"^b2: started"), "the other service was not started")
    check(not n.find(r"powering off"), "shutdown started")


def ready_timeout(n):
    """A service that starts but never listens: stopped at its ready_timeout, counted as a
    failed run (backoff, limit), and what comes after it never starts."""
    n.wait(r"^a: \*\*\* gave up after 2 restarts in a row; on_exhausted stop", timeout=20)
    starts = [t for t, _, _ in n.find(r"^a: started")]
    misses = [(t, m) for t, _, m in n.find(
        r"^a: not ready 1 s after its start: nothing accepts on (\S+); stopping it "
        r"\(SIGTERM to pid \d+\)")]
    check(len(starts) == 3, f"{len(starts)} starts, expected 3")
    check(len(misses) == 3, f"{len(misses)} 'not ready' lines, expected 3")
    check(misses[0][1].group(1) == n.path("a.sock"), f"names {misses[0][1].group(1)}")
    for s, (t, _) in zip(starts, misses):
        check(near(t - s, 1.0, 0.3), f"declared not ready {t - s:.2f} s after its start")
    check(len(n.find(r"^a: killed by signal 15")) == 3, "a was not stopped by SIGTERM 3 times")
    for k, d in ((1, 1), (2, 2)):
        check(n.find(rf"^a: restarting in {d} s \(restart {k} of 2\)"), f"no restart {k} log")
    check(not n.find(r"^a: ready"), "a was called ready")
    check(not n.find(r"^b: started"), "b started although a never was ready")
    check(n.proc.poll() is None, "the driver ended; on_exhausted stop keeps the node up")


def exhausted_action(verb, action, sig):
    """on_exhausted <action>: PID 1 shuts down in order, then reboot(2). In a pid
    namespace reboot(2) ends the namespace's init "by" a signal the action picks:
    RB_POWER_OFF and RB_HALT_SYSTEM by SIGINT, RB_AUTOBOOT by SIGHUP; unshare --fork
    passes that on as its own death."""
    def scenario(n):
        n.wait(rf"^f: \*\*\* gave up after 1 restarts in a row; on_exhausted {action}",
               timeout=8)
        n.wait(rf"^service f used up its restarts: {verb}")
        n.wait(rf"^shutdown: {verb} now")
        try:
            rc = n.proc.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            raise Fail(f"the driver did not end after {verb}")
        check(rc == -sig, f"unshare ended with {rc}, expected -{sig.name} ({action})")
    return scenario


exhausted_poweroff = exhausted_action("powering off", "poweroff", signal.SIGINT)
exhausted_reboot = exhausted_action("rebooting", "reboot", signal.SIGHUP)
exhausted_halt = exhausted_action("halting", "halt", signal.SIGINT)


def orphan_reaped(n):
    n.wait(r"^df: \*\*\* gave up after 1 restarts", timeout=8)
    n.wait(r"^reaped orphan \d+ \(exit 0\), 2 so far", timeout=3)
    pause(1.0)
    zombies = [(h, p) for h, p, s in n.ns_procs() if s == "Z"]
    check(not zombies, f"zombies in the namespace: {zombies}")
    check(n.find(r"^df: exited with status 0"), "df's exit was not seen")
    check(n.proc.poll() is None, "the driver ended")


SHUTDOWN = A_AND_B + """
service c
	after b
	exec @SVC@/sleeper.sh
service st
	exec @SVC@/stubborn.sh
"""


def shutdown_order(n):
    n.wait(r"^c: started")
    n.wait(r"^st: started")
    pause(0.3)
    t0 = time.monotonic()
    n.signal_pid1(signal.SIGTERM)
    try:
        rc = n.proc.wait(timeout=scaled(30))
    except subprocess.TimeoutExpired:
        raise Fail(f"PID 1 did not end within {scaled(30):.0f} s of SIGTERM")
    took = time.monotonic() - t0
    check(rc == -signal.SIGINT, f"unshare ended with {rc}, expected -SIGINT (poweroff)")
    order = [msg for _, msg in n.lines() if msg.startswith("shutdown:")]

    def idx(prefix):
        for i, msg in enumerate(order):
            if msg.startswith(prefix):
                return i
        raise Fail(f"no '{prefix}' in {order}")
    check(idx("shutdown: stopping c") < idx("shutdown: c stopped") <
          idx("shutdown: stopping b") < idx("shutdown: b stopped") <
          idx("shutdown: stopping a") < idx("shutdown: a stopped") <
          idx("shutdown: sending SIGTERM to all"), f"order: {order}")
    check(idx("shutdown: stopping st") < idx("shutdown: st still running after 2 s: killed")
          < idx("shutdown: powering off now"), f"order: {order}")
    check(n.find(r"^shutdown: st still running after 2 s: killed [1-9]\d* process(es)? "
                 r"\(cgroup.kill\)"), "stubborn was not killed through cgroup.kill")
    # Bound: per dependency level (3) timeout + 1 s, then the kill-the-rest phase.
    check(took < scaled(3 * (2 + 1) + 2 + 5), f"shutdown took {took:.1f} s")
    check(took < scaled(6), f"shutdown took {took:.1f} s; with one stubborn service about 2 s")
    leftovers = [d for d in os.listdir(n.cgroup) if os.path.isdir(os.path.join(n.cgroup, d))]
    check(not leftovers, f"service cgroups left: {leftovers}")


def output_rotation(n):
    lines = 25000
    log = os.path.join(n.logdir, "chatty.log")
    end = time.monotonic() + scaled(20)
    while "chatty: done" not in (open(log, errors="replace").read()
                                 if os.path.exists(log) else ""):
        check(time.monotonic() < end, "chatty.log never got its last line")
        time.sleep(0.1)
    old = log + ".1.zst"
    check(os.path.exists(old), "no chatty.log.1.zst")
    check(not os.path.exists(log + ".2.zst"), "rotated twice for 1.6 MB")
    check(not os.path.exists(old + ".tmp"), "temp file left behind")
    rotated = subprocess.run(["zstd", "-dc", old], capture_output=True, check=True).stdout
    check(len(rotated) <= 1 << 20, f"{len(rotated)} bytes in .1.zst, over 1 MiB")
    text = rotated.decode() + open(log).read()
    want = "".join(f"chatty line {i:07d}: the quick brown fox jumps over the lazy dog\n"
                   for i in range(1, lines + 1)) + "chatty: done\n"
    check(text == want, "rotated + live log differ from what the service wrote")
    # kmsg: the burst, then its share; every line either passed or is counted as dropped.
    kmsg = open(n.kmsg).read().splitlines()
    passed = sum(1 for k in kmsg if k.startswith("<31>chatty: chatty line "))
    dropped = sum(int(m.group(1)) for k in kmsg
                  for m in [re.match(r"<31>chatty: (\d+) lines dropped \(rate limit\)$", k)] if m)
    check(dropped > 0, "nothing was dropped from a flood")
    check(passed + dropped == lines, f"{passed} passed + {dropped} dropped != {lines}")
    check(200 <= passed < 2000, f"{passed} lines of a flood reached kmsg")
    check("<31>chatty: chatty: done" in kmsg, "the line after the flood did not reach kmsg")


def early_before_gate(n):
    """An early service starts at once; the first one that is not early only after the
    gate, which waits for the loader (still running then: waited for, exit status kept)."""
    te, _, _ = n.wait(r"^e: started \(pid \d+\)")
    tl, _, _ = n.wait(r"^svc_pid1: loader \d+ started")
    tg, msg, _ = n.wait(r"^svc_pid1: gate: loader exit (\d+), (.*)$")
    tn, _, _ = n.wait(r"^n: started \(pid \d+\)")
    check(te < tg <= tn, f"order e started {te}, gate {tg}, n started {tn}")
    check(tg - tl >= 0.9, f"gate {tg - tl:.2f} s after the loader's start; it runs 1 s")
    check(msg.endswith("loader exit 7, waited for"), msg)


def gate_after_loader_reaped(n):
    """The loader ends before any service needs the gate: the loop reaps it through the
    child hook (not as an orphan, not as a service) and the gate uses its status."""
    tr, _, _ = n.wait(r"^svc_pid1: loader \d+ reaped by the loop")
    tg, msg, _ = n.wait(r"^svc_pid1: gate: loader exit (\d+), (.*)$")
    tn, _, _ = n.wait(r"^n: started \(pid \d+\)")
    ta, _, _ = n.wait(r"^e: ready")
    check(tr < ta <= tg <= tn, f"order loader reaped {tr}, e ready {ta}, gate {tg}, n {tn}")
    check(msg.endswith("loader exit 7, reaped by the loop"), msg)
    check(not n.find(r"reaped orphan"), "the loader was counted as an orphan")


SCENARIOS = [
    ("early_before_gate", """
service e
	early
	exec @SVC@/sleeper.sh
service n
	exec @SVC@/sleeper.sh
""", early_before_gate),
    ("gate_after_loader_reaped", """
service e
	early
	exec @SVC@/sock_ready.py
	env DELAY=2
	env SOCK=@DIR@/e.sock
	ready socket @DIR@/e.sock
service n
	after e
	exec @SVC@/sleeper.sh
""", gate_after_loader_reaped),
    ("start_order", A_AND_B, start_order),
    ("restart_dependency", A_AND_B, restart_dependency),
    ("exhausted_stop", """
service f
	exec @SVC@/fail.sh
	restart 1 30
	limit 3
	on_exhausted stop
service b2
	exec @SVC@/sleeper.sh
""", exhausted_stop),
    ("exhausted_poweroff", """
service f
	exec @SVC@/fail.sh
	limit 1
	on_exhausted poweroff
""", exhausted_poweroff),
    ("exhausted_reboot", """
service f
	exec @SVC@/fail.sh
	limit 1
	on_exhausted reboot
""", exhausted_reboot),
    ("exhausted_halt", """
service f
	exec @SVC@/fail.sh
	limit 1
	on_exhausted halt
""", exhausted_halt),
    ("ready_timeout", """
service a
	exec @SVC@/sock_ready.py
	env DELAY=1000
	env SOCK=@DIR@/a.sock
	ready socket @DIR@/a.sock
	ready_timeout 1
	restart 1 30
	limit 2
	on_exhausted stop
service b
	after a
	exec @SVC@/sleeper.sh
""", ready_timeout),
    ("orphan_reaped", """
service df
	exec @SVC@/double_fork.sh
	limit 1
	on_exhausted stop
""", orphan_reaped),
    ("shutdown_order", SHUTDOWN, shutdown_order),
    ("output_rotation", """
service chatty
	exec @SVC@/chatty.sh
	env LINES=25000
""", output_rotation),
]


def main():
    global CGROOT
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-k", help="only scenarios whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dirs")
    args = ap.parse_args()
    todo = [s for s in SCENARIOS if not args.k or args.k in s[0]]

    why = None
    CGROOT = cgroup2_root()
    if os.geteuid() != 0:
        why = "needs root (pid and mount namespaces, cgroups)"
    elif not CGROOT:
        why = "no writable cgroup2 mount"
    elif not os.access(DRIVER, os.X_OK):
        why = f"{DRIVER} is missing (make build/ns/svc_pid1)"
    elif not shutil.which("unshare") or not shutil.which("zstd"):
        why = "unshare and zstd are needed"
    if why:
        for name, _, _ in todo:
            print(f"SKIP ns/{name}: {why}")
        print(f"0 passed, 0 failed, {len(todo)} skipped")
        return 0

    limit = scaled(SCENARIO_LIMIT)

    def over_limit(signum, frame):
        raise Fail(f"no result within {limit:g} s (the scenario's time limit)")
    signal.signal(signal.SIGALRM, over_limit)

    passed = failed = 0
    for name, conf, fn in todo:
        t0 = time.monotonic()
        node = None
        err = None
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            node = Node(name, HEADER + conf, keep=args.keep)
            fn(node)
            node.check_supervisor(ENDS_ITSELF.get(name))
        except Fail as e:
            err = str(e)
        except Exception as e:  # a broken scenario is a failure, not a crash of the run
            err = f"{type(e).__name__}: {e}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if node:
            node.finish(err is not None)
        if err:
            print(f"FAIL ns/{name}: {err}", flush=True)
            failed += 1
        else:
            print(f"PASS ns/{name} ({time.monotonic() - t0:.1f} s)", flush=True)
            passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
