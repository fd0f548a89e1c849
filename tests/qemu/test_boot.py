"""Boot scenarios: cvminit as PID 1 under QEMU (q35, TCG), kernel from Debian.

The contract checked here (console lines, each with "cvminit: "):
  cvminit: cvminit <version> starting as PID 1
  cvminit: mounts: /proc proc, /sys sysfs, ...   (read back from mountinfo)
  cvminit: boot complete in <N> ms
  cvminit: timeline: <stage> <ms> ms             (one or more, after boot complete)
  cvminit: ready: waiting for signals and the power button (<device path>)
  cvminit: tpm: TPM 2.0 ready on /dev/tpmrm0, PCR banks: sha1 sha256 sha384 sha512
  QMP system_powerdown -> cvminit: power button: powering off, cvminit: shutdown: ...,
  then the kernel's "reboot: Power down" and QEMU exits.
  Bad cmdline values -> an explanation, a box with REFUSING TO BOOT, power off.
"""

import re
import time

from vm import TestFailure, boot, initrd_with, note, scaled

START = r"cvminit: cvminit (\S+) starting as PID 1"
# the device path may be followed by more words ("/dev/input/event1 and others")
READY = r"cvminit: ready: waiting for signals and the power button \((/dev/[^\s)]+)[^)]*\)"
BOOT_COMPLETE = r"cvminit: boot complete in (\d+) ms"
TIMELINE = r"cvminit: timeline: (\S+) (\d+(?:\.\d+)?) ms"

# what cvminit must have mounted (mount point, fs type)
MOUNTS = [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"), ("/run", "tmpfs"),
          ("/sys/kernel/security", "securityfs"), ("/sys/fs/cgroup", "cgroup2"),
          ("/sys/kernel/config", "configfs")]

TPM = r"cvminit: tpm: TPM 2\.0 ready on /dev/tpmrm0, PCR banks: (.*)$"
TPM_BANKS = ["sha1", "sha256", "sha384", "sha512"]

# generous: TCG boots take ~15 s (SeaBIOS) to ~35 s (OVMF) on 2 cores
FIRST_LINE_TIMEOUT = 240
STEP_TIMEOUT = 60
POWEROFF_BOUND = 30   # seconds from system_powerdown to QEMU's exit


def all_of(*words):
    """Regex: a cvminit line containing every word (any order)."""
    return r"cvminit: " + "".join(f"(?=.*{re.escape(w)})" for w in words)


def expect_start(v, label):
    v.wait_for(START, scaled(FIRST_LINE_TIMEOUT))
    first = v.find(r"cvminit: ")[0][0]
    note(f"{label}: first 'cvminit:' line {first:.1f} s after QEMU start")
    return first


def expect_mounts(v):
    m = v.wait_for(r"cvminit: mounts: (.*)$", scaled(STEP_TIMEOUT), since=0)
    have = set()
    for item in m.group(1).split(","):
        parts = item.split()
        if len(parts) == 2:
            have.add(tuple(parts))
    missing = [f"{mp} {fs}" for mp, fs in MOUNTS if (mp, fs) not in have]
    if missing:
        raise TestFailure(f"mounts line lacks: {', '.join(missing)}; line: {m.group(0)}")


def expect_boot_complete(v):
    """'boot complete in N ms' followed by timeline lines; returns (N, index of
    the line after 'boot complete')."""
    m = v.wait_for(BOOT_COMPLETE, scaled(STEP_TIMEOUT), since=0)
    total = int(m.group(1))
    after = v.cursor
    v.wait_for(TIMELINE, scaled(STEP_TIMEOUT), since=after)
    # timeline lines must follow "boot complete" (kernel lines may interleave)
    between = [s for _, s in v.lines[after:v.cursor - 1] if "cvminit: " in s]
    if between:
        raise TestFailure(f"'boot complete' not directly followed by timeline lines: {between[0]}")
    return total, after


def timeline_note(v, total, after):
    stages = []
    for _, s in v.lines[after:]:
        mm = re.search(TIMELINE, s)
        if mm:
            stages.append(f"{mm.group(1)} {float(mm.group(2)):g}")
        elif "cvminit: " in s:
            break
    note(f"boot complete in {total} ms; timeline (ms): {', '.join(stages)}")


def expect_ready(v):
    m = v.wait_for(READY, scaled(STEP_TIMEOUT), since=0)
    return m.group(1)


def expect_poweroff(v, bound, t0=None):
    """QEMU must exit by a guest power-off within bound seconds (from t0).

    The kernel prints "reboot: Power down" right before the ACPI S5 write; with
    two vCPUs that last line can still sit in another CPU's printk hand-off when
    QEMU stops, so it is lost now and then. QEMU's QMP SHUTDOWN event says for
    sure: reason guest-shutdown is a power-off (a panic with panic=-1 would be
    guest-reset). Accept a missing console line when that event says so."""
    t0 = time.monotonic() if t0 is None else t0
    v.wait_exit(max(bound - (time.monotonic() - t0), 1))
    dt = time.monotonic() - t0
    reason = v.shutdown_reason()
    said = bool(v.find(r"reboot: Power down"))
    if reason is not None and reason != "guest-shutdown":
        raise TestFailure(f"QEMU stopped with reason {reason}, not a guest power-off")
    if not said:
        if reason != "guest-shutdown":
            v._fail("QEMU exited without the kernel's 'reboot: Power down' and without "
                    "a QMP SHUTDOWN guest-shutdown event")
        note("kernel's 'reboot: Power down' line lost at exit; QMP SHUTDOWN reason guest-shutdown")
    return dt


def power_off_via_button(v):
    """system_powerdown (ACPI power button) -> orderly power-off, QEMU exits."""
    t0 = time.monotonic()
    bound = scaled(POWEROFF_BOUND)
    v.qmp("system_powerdown")
    v.wait_for(r"cvminit: power button: powering off", bound)
    v.wait_for(r"cvminit: shutdown: ", max(bound - (time.monotonic() - t0), 1))
    dt = expect_poweroff(v, bound, t0)
    note(f"QEMU exited {dt:.1f} s after system_powerdown")


def expect_refusal_and_poweroff(v):
    v.wait_for(r"REFUSING TO BOOT", scaled(STEP_TIMEOUT), since=0)
    expect_poweroff(v, scaled(POWEROFF_BOUND))
    v.assert_absent(READY, "cvminit refused to boot but still reported ready")


def full_boot(ovmf, label):
    with boot(ovmf=ovmf) as v:
        expect_start(v, label)
        expect_mounts(v)
        total, after = expect_boot_complete(v)
        m = v.wait_for(READY, scaled(STEP_TIMEOUT), since=0)
        timeline_note(v, total, after)
        note("power button device(s): " + m.group(0).split("(", 1)[1].rstrip(")"))
        power_off_via_button(v)


def test_boot_ovmf():
    """OVMF + swtpm: start, mounts, boot complete + timeline, ready, power button off."""
    full_boot(True, "OVMF")


def test_boot_seabios():
    """SeaBIOS + swtpm: the same as test_boot_ovmf with the faster firmware."""
    full_boot(False, "SeaBIOS")


def test_tpm():
    """OVMF + swtpm (firmware sends TPM2_Startup): the TPM line lists all four PCR banks.
    The command line carries a module option for dm_mod (a required module of the
    initrd): libkmod never sees the command line (the modules load before it is
    measured), so dm_mod loads without it and the kernel never complains about it."""
    with boot("dm_mod.cvminit_unmeasured=1", ovmf=True) as v:
        expect_start(v, "OVMF")
        m = v.wait_for(TPM, scaled(STEP_TIMEOUT), since=0)
        banks = m.group(1).split()
        if banks != TPM_BANKS:
            raise TestFailure(f"PCR banks {banks}, expected {TPM_BANKS}: {m.group(0)}")
        expect_ready(v)
        v.assert_absent(r"dm_mod: unknown parameter 'cvminit_unmeasured'",
                        "libkmod applied a module option from the unmeasured command line")
        v.assert_absent(r"cannot hide /proc/cmdline|no private mount namespace",
                        "the command line could not be hidden from libkmod")
        power_off_via_button(v)


def test_cmdline_invalid_on_failure():
    """cvminit.on_failure=explode: says it is invalid, refuses to boot, powers off (no panic)."""
    with boot("cvminit.on_failure=explode", ovmf=False) as v:
        expect_start(v, "SeaBIOS")
        v.wait_for(all_of("cvminit.on_failure", "explode", "invalid"), scaled(STEP_TIMEOUT), since=0)
        expect_refusal_and_poweroff(v)


def _bad_word(extra, words):
    """A bad cmdline word: the message must appear, then cvminit refuses to boot and
    powers off (the command line is part of what the node was measured to run with)."""
    with boot(extra, ovmf=False) as v:
        expect_start(v, "SeaBIOS")
        v.wait_for(all_of(*words), scaled(STEP_TIMEOUT), since=0)
        expect_refusal_and_poweroff(v)


def test_cmdline_unknown_key():
    """cvminit.bogus=1: a line naming the unknown key."""
    _bad_word("cvminit.bogus=1", ["unknown", "cvminit.bogus"])


def test_cmdline_empty_value():
    """cvminit.log_level= (empty value): a line saying 'empty value'."""
    _bad_word("cvminit.log_level=", ["empty value"])


def test_ctrl_alt_del_reboots():
    """Ctrl-Alt-Del (QMP send-key): the kernel sends SIGINT to PID 1 (cvminit disabled the
    immediate reboot), cvminit runs its orderly shutdown and reboots; with -no-reboot QEMU
    then exits with a guest reset, not a power-off and not a panic."""
    with boot(ovmf=False) as v:
        expect_start(v, "SeaBIOS")
        expect_ready(v)
        keys = [{"type": "qcode", "data": k} for k in ("ctrl", "alt", "delete")]
        v.qmp("send-key", keys=keys)
        v.wait_for(r"cvminit: SIGINT \(ctrl-alt-del\): rebooting", scaled(STEP_TIMEOUT))
        v.wait_for(r"cvminit: shutdown: rebooting now", scaled(POWEROFF_BOUND))
        v.wait_exit(scaled(POWEROFF_BOUND))
        reason = v.shutdown_reason()
        if reason != "guest-reset":
            raise TestFailure(f"QEMU stopped with reason {reason}, expected a guest reset")
        note(f"QEMU exit reason: {reason}")


# --- what a refusal does: on_failure from the config, and the command line over it -------
# "no TPM" is refused after the config is read (measurer_require), so the settings merged
# from the initrd's config and the command line decide the action.
ON_FAILURE_CONF = "set on_failure=reboot\n"


def test_on_failure_reboot_from_config():
    """No TPM, the config says on_failure=reboot: the refusal says so and the VM resets
    (QEMU runs with -no-reboot, so a reset ends it with reason guest-reset)."""
    initrd = initrd_with({"/etc/cvminit/cvminit.conf": ON_FAILURE_CONF})
    with boot(ovmf=False, tpm=False, initrd=initrd) as v:
        expect_start(v, "SeaBIOS")
        v.wait_for(r"no TPM \(/dev/tpmrm0\) and no Intel TDX RTMRs", scaled(STEP_TIMEOUT),
                   since=0)
        v.wait_for(r"nothing was unlocked and nothing was started; action: reboot",
                   scaled(STEP_TIMEOUT), since=0)
        v.wait_exit(scaled(POWEROFF_BOUND))
        if v.shutdown_reason() != "guest-reset":
            raise TestFailure(f"QEMU stopped with reason {v.shutdown_reason()}, "
                              "expected the guest's reset")
        v.assert_absent(READY, "cvminit refused to boot but still reported ready")


def test_on_failure_cmdline_over_config_halts():
    """The same config, and cvminit.on_failure=halt on the command line: the command line
    wins; the kernel halts and QEMU keeps running (no power-off, no reset)."""
    initrd = initrd_with({"/etc/cvminit/cvminit.conf": ON_FAILURE_CONF})
    with boot("cvminit.on_failure=halt", ovmf=False, tpm=False, initrd=initrd) as v:
        expect_start(v, "SeaBIOS")
        v.wait_for(r"nothing was unlocked and nothing was started; action: halt",
                   scaled(STEP_TIMEOUT), since=0)
        v.wait_for(r"reboot: System halted", scaled(POWEROFF_BOUND))
        time.sleep(scaled(5))
        if v._qemu.poll() is not None or v.shutdown_reason() is not None:
            raise TestFailure(f"QEMU stopped (rc {v._qemu.poll()}, reason "
                              f"{v.shutdown_reason()}) after a halt")
        v.assert_absent(READY, "cvminit refused to boot but still reported ready")

