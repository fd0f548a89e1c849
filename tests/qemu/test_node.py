"""The node: the image built with the kubelet stand-in (build/image-test, `make
test-image`) boots through dm-verity and switch_root, makes /var on first boot, starts
containerd, then kubelet once containerd's socket accepts; at power-off kubelet stops
before containerd and /var is unmounted; the next boot finds /var as it was left."""
import re
import subprocess

import test_boot
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


def node_vm(name, disk):
    return VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
              name=name, memory=2048, timeout=scaled(600))


def index_of(v, regex):
    for i, (_, s) in enumerate(v.lines):
        if re.search(regex, s):
            return i
    raise TestFailure(f"no console line matches {regex}")


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
        test_boot.expect_ready(v)
        test_boot.power_off_via_button(v)
        if index_of(v, r"shutdown: stopping kubelet") > index_of(v, r"shutdown: stopping containerd"):
            raise TestFailure("containerd was stopped before kubelet")
        v.wait_for(r"cvminit: shutdown: unmounted /var", 1, since=0)

    with node_vm("node_boot2", disk) as v:
        test_boot.expect_start(v, "OVMF+UKI")
        m = v.wait_for(r"cvminit: state: /dev/vda\d .* mounted on /var(.*)$", scaled(STEP),
                       since=0)
        if "new filesystem" in m.group(1):
            raise TestFailure("second boot made a new filesystem over the first one's")
        v.wait_for(r"kubelet-standin: start 2 recorded", scaled(STEP), since=0)
        v.assert_absent(r"EXT4-fs \(vda\d\): recovery complete",
                        "/var was not unmounted cleanly at the first power-off")
        test_boot.power_off_via_button(v)
    note("second boot: /var kept the stand-in's start count; clean ext4 mount")
