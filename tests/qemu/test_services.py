"""Config and service scenarios in the initrd: a malformed config refuses the boot with
file:line; a service that keeps exiting is restarted with a doubling backoff until its
restarts run out, then its on_exhausted action powers the node off."""
import re

import helpers
from vm import RELAY_SERVICE, STANDIN, TestFailure, boot, initrd_with, note, scaled

CONF = "/etc/cvminit/cvminit.conf"


def test_config_malformed_refuses():
    """A bad line in cvminit.conf: an error naming file:line, a refusal, power off."""
    text = "service probe\n\texec /init --version\n\tbogus 1\n"
    with boot(initrd=initrd_with({CONF: text}), ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(rf"cvminit: config: {re.escape(CONF)}:3: unknown directive \"bogus\"",
                   scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"probe: started", "a service started despite the bad config")


def test_service_backoff_then_on_exhausted():
    """/init --version exits at once: restarts after 1, 2, 4 s (restart 4 s, max 4), then
    'gave up after 3 restarts' and on_exhausted poweroff shuts the node down cleanly.
    Its output reaches kmsg under its name at LOG_DEBUG (read on the test channel, which a
    relay service copies kmsg to) and never the serial console, although the command line
    asks the kernel to print every level: cvminit pins the console level back to 7."""
    text = ("service probe\n\texec /init --version\n\trestart 1 4\n\tlimit 3\n"
            "\ton_exhausted poweroff\n" + RELAY_SERVICE)
    initrd = initrd_with({CONF: text}, programs={"/usr/bin/kubelet-standin": STANDIN})
    with boot("loglevel=8 ignore_loglevel", initrd=initrd, ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit: console: kernel console level 8 lowered to 7$", scaled(60),
                   since=0)
        v.wait_for(r"cvminit: config: .*: 2 service\(s\)", scaled(60), since=0)
        v.chan.wait_for(r"^<7>\[[^\]]*\] relay: kubelet-standin: channel: kmsg relayed to "
                        r"/dev/ttyS1$", scaled(60), since=0)
        # A service gets none of PID 1's descriptors (here PID 1 has the TPM open).
        n = v.chan.wait_for(r"relay: kubelet-standin: inherited fds beyond 0-2: (\d+)$",
                            scaled(60), since=0)
        if n.group(1) != "0":
            raise TestFailure("the relay service inherited descriptors: " + "; ".join(
                s for _, s in v.chan.find(r"relay: kubelet-standin: inherited fd \d+ ")))
        stamps = []
        for i in range(4):
            m = v.wait_for(r"\[\s*(\d+\.\d+)\] cvminit: probe: started \(pid \d+\): "
                           r"/init --version$", scaled(60))
            stamps.append(float(m.group(1)))
            # The service's own output reaches kmsg under its name, at LOG_DEBUG, after
            # cvminit's record of this start (kmsg order).
            v.chan.wait_for(r"cvminit: probe: started \(pid \d+\): /init --version$",
                            scaled(30), since=0 if i == 0 else None)
            v.chan.wait_for(r"^<7>\[[^\]]*\] probe: cvminit \S+$", scaled(30))
            if i < 3:
                v.wait_for(rf"cvminit: probe: restarting in {2 ** i} s \(restart {i + 1} of 3\)",
                           scaled(30))
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        note("gaps between starts (guest clock): " + ", ".join(f"{g:.2f} s" for g in gaps))
        for want, got in zip((1, 2, 4), gaps):
            # The backoff is never shorter; a loaded host may make it longer.
            if not want <= got < want + scaled(1.5):
                raise TestFailure(f"restart gap {got:.2f} s, expected about {want} s: {gaps}")
        v.wait_for(r"cvminit: probe: \*\*\* gave up after 3 restarts in a row; "
                   r"on_exhausted poweroff", scaled(30))
        helpers.expect_poweroff(v, scaled(helpers.POWEROFF_BOUND))
    if len(v.chan.find(r"^<7>\[[^\]]*\] probe: cvminit \S+$")) != 4:
        raise TestFailure("not one kmsg line per start of probe on the test channel")
    v.console.assert_absent(r"\] (probe|relay): ", "service output on the serial console")
