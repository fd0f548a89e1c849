"""The node: the image built with the kubelet stand-in (build/image-test, `make
test-image`) boots through dm-verity and switch_root, makes /var on first boot, starts
containerd, then kubelet once containerd's socket accepts; at power-off kubelet stops
before containerd and /var is unmounted; the next boot finds /var as it was left.

On its first start the stand-in (tests/fixtures/kubelet-standin.c) also runs a container
with ctr + runc from the test OCI image (tests/fixtures/mkoci.py, in the image under
/usr/share/cvminit-test/), then kills containerd with SIGKILL: cvminit must stop kubelet,
restart containerd after its backoff and start kubelet again once containerd is ready."""
import hashlib
import re
import subprocess

import test_boot
import test_state
from vm import REPO, WORK_ROOT, VM, TestFailure, note, scaled

TEST_IMAGE = REPO / "build" / "image-test" / "cvminit.raw"
STEP = 120
KUBELET_ARGV = ("/usr/bin/kubelet --config=/etc/kubernetes/kubelet.yaml "
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock "
                "--kubeconfig=/etc/kubernetes/kubelet.conf "
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf")


def node_disk(name):
    if not TEST_IMAGE.is_file():
        raise TestFailure(f"{TEST_IMAGE} is missing: run 'make test-image' (make check does)")
    work = WORK_ROOT / f"{name}-disk"
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(TEST_IMAGE), str(disk)], check=True)
    return disk


def node_vm(name, disk, tpm_from=None):
    """tpm_from: the vTPM state of an earlier boot (the state key is sealed to it)."""
    if tpm_from:
        return VM(None, None, None, ovmf=True, tpm=True,
                                disks=[{"file": str(disk)}], name=name, memory=2048,
                                timeout=scaled(600), tpm_from=tpm_from)
    return VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
              name=name, memory=2048, timeout=scaled(600))


def index_of(v, regex):
    for i, (_, s) in enumerate(v.lines):
        if re.search(regex, s):
            return i
    raise TestFailure(f"no console line matches {regex}")


def container_runs_with_runc(v):
    """The stand-in's one container: imported from the OCI tarball, run by runc. Its shell
    is PID 1 of its own PID namespace, so the line comes from inside a container."""
    v.wait_for(r"\] kubelet: kubelet-standin: import of /usr/share/cvminit-test/"
               r"busybox-oci.tar: status 0$", scaled(STEP), since=0)
    v.wait_for(r"\] kubelet: kubelet-standin: container: hello-from-runc pid=1$",
               scaled(STEP), since=0)
    v.wait_for(r"\] kubelet: kubelet-standin: container: cgroup=0::/cvminit-test/probe1$",
               scaled(STEP), since=0)
    v.wait_for(r"\] kubelet: kubelet-standin: container run: status 0$", scaled(STEP),
               since=0)


def orphan_reaped(v):
    """The stand-in's grandchild outlives its parent; 1.5 s later PID 1 has reaped it and
    the node has no zombie."""
    v.wait_for(r"\] kubelet: kubelet-standin: orphan \d+ reaped by PID 1$", scaled(STEP),
               since=0)
    v.wait_for(r"\] kubelet: kubelet-standin: zombies: 0$", scaled(STEP), since=0)


def containerd_killed_and_restarted(v):
    """After the stand-in's SIGKILL to containerd, in this order: containerd's death,
    kubelet stopped because of it, containerd's 1 s backoff, a new containerd, ready, and
    only then a new kubelet (the stand-in's second start), which answers."""
    m = v.wait_for(r"kubelet-standin: sent SIGKILL to containerd \(pid (\d+)\)$",
                   scaled(STEP), since=0)
    old_pid = m.group(1)
    v.wait_for(r"cvminit: containerd: killed by signal 9 \(Killed\) after [\d.]+ s$",
               scaled(STEP))
    v.wait_for(r"cvminit: kubelet: stopping \(SIGTERM to pid \d+\): containerd is down",
               scaled(STEP))
    v.wait_for(r"cvminit: containerd: restarting in 1 s \(restart 1 of 10\)$", scaled(STEP))
    new_pid = v.wait_for(r"cvminit: containerd: started \(pid (\d+)\): /usr/bin/containerd ",
                         scaled(STEP)).group(1)
    if new_pid == old_pid:
        raise TestFailure(f"the restarted containerd has the killed one's pid {old_pid}")
    t_started = v.last_match_time
    v.wait_for(r"cvminit: containerd: ready \(socket /run/containerd/containerd.sock",
               scaled(STEP))
    v.wait_for(r"cvminit: kubelet: started \(pid \d+\): " + re.escape(KUBELET_ARGV),
               scaled(STEP))
    v.wait_for(r"kubelet-standin: start 2 recorded", scaled(STEP))
    v.wait_for(r"kubelet-standin: containerd answered", scaled(STEP))
    if index_of(v, r"kubelet-standin: SIGTERM, exiting$") > index_of(
            v, r"cvminit: kubelet: exited with status 0 after"):
        raise TestFailure("the first stand-in did not exit on cvminit's SIGTERM")
    if index_of(v, r"cvminit: kubelet: (exited|killed)") > index_of(
            v, r"cvminit: containerd: started \(pid " + new_pid + r"\)"):
        raise TestFailure("the old kubelet was still running when containerd started again")
    kill_t = [t for t, s in v.find(r"cvminit: containerd: killed by signal 9")][0]
    if t_started - kill_t < 0.5:
        raise TestFailure(f"containerd came back {t_started - kill_t:.2f} s after its death: "
                          "no 1 s backoff")
    note(f"containerd SIGKILLed and back after {t_started - kill_t:.1f} s; kubelet restarted")


def machine_id_checked(v):
    """The machine ID kubelet reads from /etc/machine-id is the one cvminit logged, and that
    is SHA-256("cvminit machine-id:" + the state's LUKS2 UUID) as a version-4 UUID,
    computed here on its own."""
    m = v.wait_for(r"cvminit: state: machine ID ([0-9a-f]{32}) \(from LUKS2 ([0-9a-f-]{36})\)",
                   scaled(STEP), since=0)
    logged, luks_uuid = m.group(1), m.group(2)
    d = bytearray(hashlib.sha256(b"cvminit machine-id:" + luks_uuid.encode()).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x40
    d[8] = (d[8] & 0x3F) | 0x80
    if logged != d.hex():
        raise TestFailure(f"machine ID {logged} is not the one derived from {luks_uuid}: "
                          f"{d.hex()}")
    seen = v.wait_for(r"kubelet-standin: machine-id: (.*)$", scaled(STEP), since=0).group(1)
    if seen.strip() != logged:
        raise TestFailure(f"kubelet read /etc/machine-id {seen!r}, cvminit made {logged}")
    return logged


def test_node_boot_services_and_persistence():
    disk = node_disk("node")
    with node_vm("node_boot1", disk) as v:
        test_boot.expect_start(v, "OVMF+UKI")
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
        v.wait_for(r"\] kubelet: kubelet-standin: argv: " + re.escape(KUBELET_ARGV) + "$",
                   scaled(STEP), since=0)
        v.wait_for(r"\] kubelet: kubelet-standin: env: PATH=/usr/sbin:/usr/bin:/sbin:/bin$",
                   scaled(STEP), since=0)
        v.wait_for(r"kubelet-standin: start 1 recorded", scaled(STEP), since=0)
        v.wait_for(r"kubelet-standin: containerd answered", scaled(STEP), since=0)
        machine_id = machine_id_checked(v)
        container_runs_with_runc(v)
        orphan_reaped(v)
        containerd_killed_and_restarted(v)
        test_boot.expect_ready(v)
        test_boot.power_off_via_button(v)
        if index_of(v, r"shutdown: stopping kubelet") > index_of(v, r"shutdown: stopping containerd"):
            raise TestFailure("containerd was stopped before kubelet")
        v.wait_for(r"cvminit: shutdown: unmounted /var", 1, since=0)

    tpm = test_state.keep_tpm(v, disk.parent / "tpm")
    with node_vm("node_boot2", disk, tpm_from=tpm) as v:
        test_boot.expect_start(v, "OVMF+UKI")
        m = v.wait_for(r"cvminit: state: /dev/vda\d .* mounted on /var(.*)$", scaled(STEP),
                       since=0)
        if "new filesystem" in m.group(1):
            raise TestFailure("second boot made a new filesystem over the first one's")
        # Boot 1 started the stand-in twice (again after the containerd kill): this is 3.
        v.wait_for(r"kubelet-standin: start 3 recorded", scaled(STEP), since=0)
        v.wait_for(r"kubelet-standin: containerd answered", scaled(STEP), since=0)
        if machine_id_checked(v) != machine_id:
            raise TestFailure("the machine ID changed between two boots of the same state")
        v.assert_absent(r"EXT4-fs \((vda\d|dm-\d+)\): recovery complete",
                        "/var was not unmounted cleanly at the first power-off")
        # Only the first start ever runs the container and kills containerd.
        v.assert_absent(r"kubelet-standin: (sent SIGKILL|container run)",
                        "the stand-in repeated its one-time probes on the second boot")
        v.assert_absent(r"cvminit: containerd: (killed|exited|restarting)",
                        "containerd went down on the second boot")
        test_boot.power_off_via_button(v)
    note("second boot: /var kept the stand-in's start count; clean ext4 mount; "
         f"machine ID {machine_id} both times")
