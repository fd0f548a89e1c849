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
from helpers import BOOT_COMPLETE, FIRST_LINE_TIMEOUT, POWEROFF_BOUND, READY, START, STEP_TIMEOUT, TIMELINE, expect_boot_complete, expect_poweroff, expect_ready, expect_refusal_and_poweroff, expect_start, power_off_via_button, timeline_note  # noqa: F401


# what cvminit must have mounted (mount point, fs type)
MOUNTS = [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"), ("/run", "tmpfs"),
          ("/sys/kernel/security", "securityfs"), ("/sys/fs/cgroup", "cgroup2")]
# and must not have on a plain VM: configfs (a module on the test kernel) is for
# configfs-tsm, loaded only on a TDX or SEV-SNP guest (init/modules.list)
NOT_MOUNTED = [("/sys/kernel/config", "configfs")]

TPM = r"cvminit: tpm: TPM 2\.0 ready on /dev/tpmrm0, PCR banks: (.*)$"
TPM_BANKS = ["sha1", "sha256", "sha384", "sha512"]


def all_of(*words):
    """Regex: a cvminit line containing every word (any order)."""
    return r"cvminit: " + "".join(f"(?=.*{re.escape(w)})" for w in words)


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
    extra = [f"{mp} {fs}" for mp, fs in NOT_MOUNTED if (mp, fs) in have]
    if extra:
        raise TestFailure(f"mounted on a plain VM: {', '.join(extra)}; line: {m.group(0)}")


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



def test_locked_down_kernel_refuses_unsigned_modules():
    """lockdown=integrity (what Secure Boot turns on): the kernel loads only signed
    modules, and the initrd's are stored without their signatures. cvminit names the
    module, the kernel's refusal and the fix (MODULE_SIGNATURES=keep), refuses to boot and
    powers off; no module of the initrd was loaded unsigned. dm_mod is the background
    loader's (a child process): the refusal is still PID 1's, naming the module."""
    with boot("lockdown=integrity", ovmf=False) as v:
        expect_start(v, "SeaBIOS")
        # The refusal's box wraps the message: its lines one by one.
        v.wait_for(r"cannot load kernel module dm_mod: Operation not permitted; the",
                   scaled(STEP_TIMEOUT), since=0)
        v.wait_for(r"kernel is locked down \(/sys/kernel/security/lockdown\)", scaled(5), since=0)
        v.wait_for(r"build the image with MODULE_SIGNATURES=keep", scaled(5), since=0)
        expect_refusal_and_poweroff(v)
        v.assert_absent(r"module verification failed", "an unsigned module was loaded")
