"""The node: the image built with the kubelet stand-in (build/image-test, `make
test-image`) boots through dm-verity and switch_root, makes /var on first boot, starts
containerd, then kubelet once containerd's socket accepts; at power-off kubelet stops
before containerd and /var is unmounted; the next boot finds /var as it was left.

On its first start the stand-in (tests/fixtures/kubelet-standin.c) also runs a container
with ctr + runc from the test OCI image (tests/fixtures/mkoci.py, in the image under
/usr/share/cvminit-test/), then kills containerd with SIGKILL: cvminit must stop kubelet,
restart containerd after its backoff and start kubelet again once containerd is ready.

Services' output goes to kmsg at LOG_DEBUG, which the serial console (the host's) never
prints: the stand-in relays kmsg to the test channel (tests/qemu/vm.py), where the tests
read it, in kmsg order with cvminit's own records; the console must show none of it."""
import hashlib
import re
import subprocess

import helpers
from vm import REPO, WORK_ROOT, VM, TestFailure, note, scaled
from helpers import KUBELET_ARGV, STANDIN, NODE_STEP as STEP, SVC, TEST_IMAGE, index_of, machine_id_checked, node_disk, node_vm  # noqa: F401


def guest_time(line):
    """The kernel timestamp of a channel line, in seconds."""
    return float(re.match(r"^<\d>\[\s*(\d+\.\d+)\]", line).group(1))


def no_service_output_on_console(v, min_lines):
    """Every line of containerd and kubelet that reached kmsg (the channel) did so at
    LOG_DEBUG, and none of them is on the serial console; nor is any line the kernel
    printed for a service record ("[ t] kubelet: ...") or any kubelet-standin line."""
    seen = {"containerd": 0, "kubelet": 0}
    console = "\n".join(s for _, s in v.console.lines)
    for _, s in v.chan.lines:
        m = re.match(r"^<(\d)>\[[^\]]*\] (containerd|kubelet): (.*)$", s)
        if not m:
            continue
        if m.group(1) != "7":
            raise TestFailure(f"service output at kmsg level {m.group(1)}, not 7: {s}")
        seen[m.group(2)] += 1
        if f"{m.group(2)}: {m.group(3)}" in console:
            raise TestFailure(f"service output on the serial console: {s}")
    for name, n in seen.items():
        if n < min_lines[name]:
            raise TestFailure(f"only {n} {name} line(s) on the test channel, expected at "
                              f"least {min_lines[name]}: the relay or kmsg lost them")
    v.console.assert_absent(r"\] (containerd|kubelet): ", "service output on the serial console")
    v.console.assert_absent(r"kubelet-standin|level=(info|warning|error) ",
                            "service output on the serial console")
    return seen


def standin_fds_and_console(v):
    """The stand-in inherited no descriptor beyond 0-2 (none to /dev/tpm* or /dev/tpmrm*,
    none of PID 1's), and cvminit pinned the console: level 7 or below, SysRq off,
    ignore_loglevel off, no auto-verbose after an oops."""
    n = v.chan.wait_for(STANDIN + r"inherited fds beyond 0-2: (\d+)$", scaled(STEP),
                        since=0)
    leaked = [s for _, s in v.chan.find(STANDIN + r"inherited fd \d+ -> ")]
    tpm = [s for s in leaked if re.search(r"-> /dev/tpm(rm)?\d", s)]
    if tpm:
        raise TestFailure(f"kubelet inherited a TPM descriptor: {tpm}")
    if int(n.group(1)) != 0 or leaked:
        raise TestFailure(f"kubelet inherited {n.group(1)} descriptor(s) beyond 0-2: {leaked}")
    m = v.chan.wait_for(STANDIN + r"console: printk=(\d+) \d+ \d+ \d+ sysrq=(\S+) "
                        r"ignore_loglevel=(\S+) console_no_auto_verbose=(\S+)$",
                        scaled(STEP), since=0)
    if int(m.group(1)) > 7 or m.group(2) != "0" or m.group(3) != "N" or m.group(4) != "Y":
        raise TestFailure(f"console not pinned: {m.group(0)}")


def container_runs_with_runc(v):
    """The stand-in's one container: imported from the OCI tarball, run by runc. Its shell
    is PID 1 of its own PID namespace, so the line comes from inside a container."""
    v.chan.wait_for(STANDIN + r"import of /usr/share/cvminit-test/"
                    r"busybox-oci.tar: status 0$", scaled(STEP), since=0)
    v.chan.wait_for(STANDIN + r"container: hello-from-runc pid=1$", scaled(STEP), since=0)
    v.chan.wait_for(STANDIN + r"container: cgroup=0::/cvminit-test/probe1$", scaled(STEP),
                    since=0)
    v.chan.wait_for(STANDIN + r"container run: status 0$", scaled(STEP), since=0)


def orphan_reaped(v):
    """The stand-in's grandchild outlives its parent; PID 1 reaps it (the stand-in polls) and
    the node has no zombie."""
    v.chan.wait_for(STANDIN + r"orphan \d+ reaped by PID 1$", scaled(STEP), since=0)
    v.chan.wait_for(STANDIN + r"zombies: 0$", scaled(STEP), since=0)


def containerd_killed_and_restarted(v):
    """After the stand-in's SIGKILL to containerd, in this order: containerd's death,
    kubelet stopped because of it, containerd's 1 s backoff, a new containerd, ready, and
    only then a new kubelet (the stand-in's second start), which answers. Read on the test
    channel, where cvminit's records and the stand-in's lines are in kmsg order (the
    console has only cvminit's); times are the kernel's timestamps."""
    c = v.chan
    m = c.wait_for(STANDIN + r"sent SIGKILL to containerd \(pid (\d+)\)$", scaled(STEP),
                   since=0)
    old_pid = m.group(1)
    kill_t = guest_time(c.wait_for(
        r"cvminit: containerd: killed by signal 9 \(Killed\) after [\d.]+ s$",
        scaled(STEP)).string)
    c.wait_for(r"cvminit: kubelet: stopping \(SIGTERM to pid \d+\): containerd is down",
               scaled(STEP))
    c.wait_for(r"cvminit: containerd: restarting in 1 s \(restart 1 of 10\)$", scaled(STEP))
    m = c.wait_for(r"cvminit: containerd: started \(pid (\d+)\): /usr/bin/containerd ",
                   scaled(STEP))
    new_pid = m.group(1)
    if new_pid == old_pid:
        raise TestFailure(f"the restarted containerd has the killed one's pid {old_pid}")
    t_started = guest_time(m.string)
    c.wait_for(r"cvminit: containerd: ready \(socket /run/containerd/containerd.sock",
               scaled(STEP))
    c.wait_for(r"cvminit: kubelet: started \(pid \d+\): " + re.escape(KUBELET_ARGV),
               scaled(STEP))
    c.wait_for(STANDIN + r"start 2 recorded", scaled(STEP))
    c.wait_for(STANDIN + r"containerd answered", scaled(STEP))
    if c.index_of(STANDIN + r"SIGTERM, exiting$") > c.index_of(
            r"cvminit: kubelet: exited with status 0 after"):
        raise TestFailure("the first stand-in did not exit on cvminit's SIGTERM")
    if c.index_of(r"cvminit: kubelet: (exited|killed)") > c.index_of(
            r"cvminit: containerd: started \(pid " + new_pid + r"\)"):
        raise TestFailure("the old kubelet was still running when containerd started again")
    if t_started - kill_t < 0.5:
        raise TestFailure(f"containerd came back {t_started - kill_t:.2f} s after its death: "
                          "no 1 s backoff")
    note(f"containerd SIGKILLed and back after {t_started - kill_t:.1f} s; kubelet restarted")


def test_node_boot_services_and_persistence():
    disk = node_disk("node")
    with node_vm("node_boot1", disk) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: root: switched to the verified root", scaled(STEP), since=0)
        v.wait_for(r"cvminit: state: /dev/vda\d is blank: first boot, making ext4",
                   scaled(STEP), since=0)
        v.wait_for(r"cvminit: state: /dev/vda\d .* mounted on /var \(new filesystem\)",
                   scaled(STEP), since=0)
        v.wait_for(r"cvminit: containerd: started \(pid \d+\): /usr/bin/containerd "
                   r"--config /etc/containerd/config.toml", scaled(STEP), since=0)
        v.wait_for(r"cvminit: containerd: ready \(socket /run/containerd/containerd.sock "
                   r"accepted after \d+ ms\)", scaled(STEP), since=0)
        v.wait_for(r"cvminit: kubelet: started \(pid \d+\): " + re.escape(KUBELET_ARGV),
                   scaled(STEP), since=0)
        if index_of(v, r"cvminit: containerd: ready") > index_of(v, r"cvminit: kubelet: started"):
            raise TestFailure("kubelet started before containerd was ready")
        # The stand-in reports what it was given: exactly the config's argv and env.
        v.chan.wait_for(STANDIN + r"argv: " + re.escape(KUBELET_ARGV) + "$", scaled(STEP),
                        since=0)
        v.chan.wait_for(STANDIN + r"env: PATH=/usr/sbin:/usr/bin:/sbin:/bin$", scaled(STEP),
                        since=0)
        v.chan.wait_for(STANDIN + r"start 1 recorded", scaled(STEP), since=0)
        v.chan.wait_for(STANDIN + r"containerd answered", scaled(STEP), since=0)
        standin_fds_and_console(v)
        machine_id = machine_id_checked(v)
        container_runs_with_runc(v)
        orphan_reaped(v)
        containerd_killed_and_restarted(v)
        helpers.expect_ready(v)
        helpers.power_off_via_button(v)
        if index_of(v, r"shutdown: stopping kubelet") > index_of(v, r"shutdown: stopping containerd"):
            raise TestFailure("containerd was stopped before kubelet")
        v.wait_for(r"cvminit: shutdown: unmounted /var", 1, since=0)
    # The whole boot, power-off included: containerd logs dozens of lines at its start.
    seen = no_service_output_on_console(v, {"containerd": 10, "kubelet": 20})

    tpm = helpers.keep_tpm(v, disk.parent / "tpm")
    with node_vm("node_boot2", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        m = v.wait_for(r"cvminit: state: /dev/vda\d .* mounted on /var(.*)$", scaled(STEP),
                       since=0)
        if "new filesystem" in m.group(1):
            raise TestFailure("second boot made a new filesystem over the first one's")
        # Boot 1 started the stand-in twice (again after the containerd kill): this is 3.
        v.chan.wait_for(STANDIN + r"start 3 recorded", scaled(STEP), since=0)
        v.chan.wait_for(STANDIN + r"containerd answered", scaled(STEP), since=0)
        standin_fds_and_console(v)
        if machine_id_checked(v) != machine_id:
            raise TestFailure("the machine ID changed between two boots of the same state")
        v.assert_absent(r"EXT4-fs \((vda\d|dm-\d+)\): recovery complete",
                        "/var was not unmounted cleanly at the first power-off")
        # Only the first start ever runs the container and kills containerd.
        v.chan.assert_absent(r"kubelet-standin: (sent SIGKILL|container run)",
                             "the stand-in repeated its one-time probes on the second boot")
        v.assert_absent(r"cvminit: containerd: (killed|exited|restarting)",
                        "containerd went down on the second boot")
        helpers.power_off_via_button(v)
    seen2 = no_service_output_on_console(v, {"containerd": 10, "kubelet": 10})
    note(f"service lines on the test channel at kmsg level 7, none on the console: boot 1 "
         f"containerd {seen['containerd']}, kubelet {seen['kubelet']}; boot 2 containerd "
         f"{seen2['containerd']}, kubelet {seen2['kubelet']}")
    note("second boot: /var kept the stand-in's start count; clean ext4 mount; "
         f"machine ID {machine_id} both times")
