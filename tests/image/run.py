#!/usr/bin/env python3
"""Host-side checks of the image's build and launch tooling (no QEMU, no mkosi; run by
tests/run.py in the unit layer): make remakes the image when one of its build variables
changes (KUBELET, ...), with a stand-in builder in a scratch build directory; `make run
CVM=snp|tdx` (image/run.sh) refuses on this host, and on fake hosts for each reason, saying
why. Prints PASS/FAIL lines and `N passed, N failed`."""
import os
import shutil
import subprocess
import sys
import time
import traceback
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, "build", "test-work", "image-host")
FAKE_BUILDER = os.path.join(ROOT, "tests", "image", "fake-builder.sh")
# The variables the Makefile records for the image (IMAGE_VARS there).
IMAGE_VARS = ("KUBELET", "KUBELET_SHA256", "CVMINIT_INIT", "CVMINIT_INITRD",
              "CVMINIT_EXTRA_TREE", "CVMINIT_STATE_SIZE", "SOURCE_DATE_EPOCH", "JOIN",
              "JOIN_KEY")


def clean_env(**extra):
    """The environment without any image variable or an outer make's flags (a `make check
    KUBELET=...` around this test must not leak into the makes it runs)."""
    drop = set(IMAGE_VARS) | {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


class Scratch:
    """A build directory whose binaries are placeholders (make -o keeps them as they are),
    and the fake builder in place of image/build-image.sh."""

    def __init__(self, name):
        self.dir = os.path.join(WORK, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.build = os.path.join(self.dir, "build")
        tree = os.path.join(self.build, "image-test-tree", "usr", "share", "cvminit-test")
        self.kept = [os.path.join(self.build, p) for p in ("cvminit", "dhcp-hook",
                                                          "cvminit-agent", "cvm-measure",
                                                          "kubelet-standin", "unseal-attacker")]
        self.kept += [os.path.join(tree, "busybox-oci.tar"), os.path.join(tree, "unseal-attacker")]
        for p in self.kept:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write("placeholder\n")
        self.image = os.path.join(self.build, "image", "cvminit.raw")
        self.test_image = os.path.join(self.build, "image-test", "cvminit.raw")

    def make(self, *args, mode=None, target="image", env=None, builder=FAKE_BUILDER):
        """make's exit status and output; mode "-q" (0 up to date, 1 not) or "-n"."""
        cmd = ["make", "--no-print-directory", "-C", ROOT, f"BUILD={self.build}",
               f"IMAGE_BUILDER={builder}"]
        for p in self.kept:
            cmd += ["-o", p]
        # The disks themselves: `make image` also writes measurements.json with the real
        # cvm-measure, which a placeholder cannot run.
        target = {"image": self.image, "test-image": self.test_image}.get(target, target)
        cmd += ([mode] if mode else []) + [target] + list(args)
        r = subprocess.run(cmd, env=env or clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        return r.returncode, r.stdout

    def up_to_date(self, *args, **kw):
        rc, out = self.make(*args, mode="-q", **kw)
        if rc not in (0, 1):
            raise AssertionError(f"make -q {' '.join(args)}: status {rc}: {out}")
        return rc == 0

    def built(self, *args, **kw):
        rc, out = self.make(*args, **kw)
        assert rc == 0, f"make {' '.join(args)} failed ({rc}): {out}"
        return out

    def recorded(self, path=None):
        """{var: value} the fake builder was run with (its "disk")."""
        with open(path or self.image) as f:
            return dict(line.rstrip("\n").split("=", 1) for line in f)


def newer_than_image(image, path):
    """Makes path changed after the image was made (both in the past, so a build now is
    newer than both)."""
    now = time.time()
    os.utime(image, (now - 20, now - 20))
    os.utime(path, (now - 10, now - 10))


def image_follows_kubelet():
    """The issue's case: after a plain `make image`, `make image KUBELET=... KUBELET_SHA256=...`
    remakes the image, the builder gets both, and the same command later is up to date; a
    plain make after it remakes the image without kubelet; a newer kubelet file remakes it."""
    s = Scratch("kubelet")
    kubelet = os.path.join(s.dir, "kubelet-standin-copy")
    with open(kubelet, "w") as f:
        f.write("a stand-in for kubelet: only its name and sha256 matter here\n")
    with_kubelet = (f"KUBELET={kubelet}", "KUBELET_SHA256=" + "ab" * 32)

    s.built()
    assert s.recorded()["KUBELET"] == "", s.recorded()
    assert s.up_to_date(), "a second plain make image is not up to date"
    assert not s.up_to_date(*with_kubelet), "make image KUBELET=... answers up to date"
    rc, out = s.make(*with_kubelet, mode="-n")
    assert rc == 0 and FAKE_BUILDER in out, f"make -n shows no build: {out}"

    s.built(*with_kubelet)
    got = s.recorded()
    assert got["KUBELET"] == kubelet and got["KUBELET_SHA256"] == "ab" * 32, got
    assert s.up_to_date(*with_kubelet), "the same make image KUBELET=... again is not up to date"
    # From the environment as from the command line (README: KUBELET=... make image works).
    assert s.up_to_date(env=clean_env(KUBELET=kubelet, KUBELET_SHA256="ab" * 32)), \
        "KUBELET in the environment is not the same input as on the command line"
    assert not s.up_to_date(f"KUBELET={kubelet}", "KUBELET_SHA256=" + "cd" * 32), \
        "a new KUBELET_SHA256 alone does not remake the image"
    newer_than_image(s.image, kubelet)
    assert not s.up_to_date(*with_kubelet), "a newer kubelet file does not remake the image"
    s.built(*with_kubelet)
    assert s.up_to_date(*with_kubelet)

    assert not s.up_to_date(), "make image without KUBELET keeps the image with kubelet"
    s.built()
    assert s.recorded()["KUBELET"] == "", s.recorded()
    assert s.up_to_date()


def image_follows_every_variable():
    """Each other variable build-image.sh reads remakes the image when it changes."""
    s = Scratch("vars")
    extra = os.path.join(s.dir, "extra-tree")
    os.makedirs(extra)
    with open(os.path.join(extra, "file"), "w") as f:
        f.write("x\n")
    s.built()
    assert s.up_to_date()
    for arg in ("CVMINIT_STATE_SIZE=512M", "SOURCE_DATE_EPOCH=1700000000",
                f"CVMINIT_EXTRA_TREE={extra}", f"CVMINIT_INITRD={s.kept[0]}",
                "CVMINIT_INIT=build/other-init"):
        assert not s.up_to_date(arg), f"make image {arg} answers up to date"
    s.built(f"CVMINIT_EXTRA_TREE={extra}")
    assert s.recorded()["CVMINIT_EXTRA_TREE"] == extra
    assert s.up_to_date(f"CVMINIT_EXTRA_TREE={extra}")
    newer_than_image(s.image, os.path.join(extra, "file"))
    assert not s.up_to_date(f"CVMINIT_EXTRA_TREE={extra}"), \
        "a newer file in the extra tree does not remake the image"


def image_follows_join():
    """The join service the image trusts (JOIN, JOIN_KEY) is an input: by default the
    development address and a key pair made once under build/join-dev/ (private key 0600);
    another address or key file remakes the image, and so does a newer key file; both
    images, the test image too, get them."""
    s = Scratch("join")
    s.built()
    got = s.recorded()
    dev = os.path.join(s.build, "join-dev")
    assert got["JOIN"] == "10.0.2.100:7742", got
    assert got["JOIN_KEY"] == os.path.join(dev, "join-service.pub"), got
    mode = os.stat(os.path.join(dev, "join-service.pem")).st_mode & 0o777
    assert mode == 0o600, f"the development private key has mode {oct(mode)}"
    assert s.up_to_date()
    key = os.path.join(s.dir, "svc.pub")
    shutil.copyfile(os.path.join(dev, "join-service.pub"), key)
    assert not s.up_to_date("JOIN=10.0.0.1:7742"), "make image JOIN=... answers up to date"
    assert not s.up_to_date(f"JOIN_KEY={key}"), "make image JOIN_KEY=... answers up to date"
    s.built("JOIN=10.0.0.1:7742", f"JOIN_KEY={key}")
    got = s.recorded()
    assert got["JOIN"] == "10.0.0.1:7742" and got["JOIN_KEY"] == key, got
    assert s.up_to_date("JOIN=10.0.0.1:7742", f"JOIN_KEY={key}")
    newer_than_image(s.image, key)
    assert not s.up_to_date("JOIN=10.0.0.1:7742", f"JOIN_KEY={key}"), \
        "a newer JOIN_KEY file does not remake the image"
    s.built(target="test-image")
    assert s.recorded(s.test_image)["JOIN"] == "10.0.2.100:7742"
    assert not s.up_to_date("JOIN=10.0.0.1:7742", target="test-image")


def failed_build_is_remade():
    """A build that fails leaves no record: the next make tries again."""
    s = Scratch("failed")
    s.built()
    rc, out = s.make("CVMINIT_STATE_SIZE=1G", env=clean_env(FAKE_BUILDER_FAIL="1"))
    assert rc != 0, f"the failing builder's make succeeded: {out}"
    assert not s.up_to_date("CVMINIT_STATE_SIZE=1G"), "a failed build counts as made"
    assert not s.up_to_date(), "a failed build counts as made"


def test_image_has_its_own_inputs():
    """The test image (KUBELET set by its own rule) ignores a KUBELET given to make, and
    follows the variables it does not set."""
    s = Scratch("test-image")
    s.built(target="test-image")
    assert s.recorded(s.test_image)["KUBELET"].endswith("/kubelet-standin")
    assert s.up_to_date(target="test-image")
    assert s.up_to_date("KUBELET=/elsewhere", "KUBELET_SHA256=" + "00" * 32,
                        target="test-image"), "KUBELET given to make remakes the test image"
    assert not s.up_to_date("CVMINIT_STATE_SIZE=512M", target="test-image")


RUN_SH = os.path.join(ROOT, "image", "run.sh")
SNP_GUID = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc").bytes_le
TDX_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le


def run_sh(cvm, *args, **env):
    """image/run.sh's exit status and stderr, with CVM=cvm and env."""
    e = dict(os.environ, CVM=cvm, **env)
    r = subprocess.run([RUN_SH] + list(args), env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    return r.returncode, r.stderr.strip()


def refused(why, cvm, **env):
    rc, err = run_sh(cvm, "--check", **env)
    assert rc == 3 and err.startswith(f"run: CVM={cvm} refused: ") and why in err, \
        f"CVM={cvm} {env}: expected a refusal naming {why!r}, got {rc}: {err!r}"
    return err


class FakeHost:
    """What image/run.sh reads of a host, made up (this host has no SNP or TDX to show):
    /sys/module/<kvm module>/parameters/<param>, a QEMU that prints a version and its
    -object list, a firmware file. The KVM device stands in as /dev/null (a character
    device anyone may read and write)."""

    def __init__(self, name):
        self.dir = os.path.join(WORK, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.sys = os.path.join(self.dir, "sys")
        os.makedirs(self.sys)

    def param(self, mod, name, value):
        d = os.path.join(self.sys, "module", mod, "parameters")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(value + "\n")

    def qemu(self, version, objects):
        path = os.path.join(self.dir, f"qemu-{version}")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n"
                    f'[ "$1" = --version ] && echo "QEMU emulator version {version} (fake)" '
                    "&& exit 0\n"
                    f'[ "$1" = -object ] && printf "%s\\n" {" ".join(objects) or "none"} '
                    "&& exit 0\nexit 1\n")
        os.chmod(path, 0o755)
        return path

    def firmware(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(bytes(4096) + content + bytes(4096))
        return path

    def env(self, **kw):
        return dict({"CVM_SYS": self.sys, "CVM_KVM": "/dev/null"}, **kw)


def run_cvm_refused_here():
    """On this machine `make run CVM=snp` and CVM=tdx refuse, before anything is built, with
    the first reason the host has (no KVM, no SNP/TDX in KVM, QEMU too old)."""
    for cvm in ("snp", "tdx"):
        rc, err = run_sh(cvm, "--check")
        assert rc == 3 and err.startswith(f"run: CVM={cvm} refused: "), (cvm, rc, err)
        assert any(w in err for w in ("KVM", "too old", "has no")), err
        r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "run", f"CVM={cvm}"],
                           env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        assert r.returncode != 0 and err in r.stdout, f"make run CVM={cvm}: {r.stdout}"
        assert "build-image" not in r.stdout and "install-deps" not in r.stdout, \
            f"make run CVM={cvm} built or installed before refusing: {r.stdout}"
    rc, err = run_sh("sev", "--check")
    assert rc == 2 and "expected snp or tdx" in err, (rc, err)


def run_cvm_refusal_reasons():
    """Each of the host's missing pieces is named, in order, on made-up hosts; a host with
    all of them passes the checks."""
    h = FakeHost("cvm-host")
    refused("no KVM (/nonexistent/kvm is missing)", "snp", **h.env(CVM_KVM="/nonexistent/kvm"))
    refused("/sys/module/kvm_amd is missing", "snp", **h.env())
    h.param("kvm_amd", "sev_snp", "N")
    refused("sev_snp is 'N'", "snp", **h.env())
    h.param("kvm_amd", "sev_snp", "Y")
    old = h.qemu("7.2.22", ["sev-guest"])
    refused("QEMU 7.2 is too old: sev-snp-guest needs QEMU >= 9.1", "snp", **h.env(QEMU=old))
    bare = h.qemu("9.0.1", ["sev-guest"])
    refused("QEMU 9.0 is too old", "snp", **h.env(QEMU=bare))
    bare = h.qemu("10.0.2", ["sev-guest"])
    refused("has no sev-snp-guest object", "snp", **h.env(QEMU=bare))
    good = h.qemu("10.0.2", ["sev-guest", "sev-snp-guest", "tdx-guest"])
    refused("no firmware /nonexistent.fd", "snp",
            **h.env(QEMU=good, CVM_FIRMWARE="/nonexistent.fd"))
    plain = h.firmware("plain.fd", TDX_GUID)
    refused("has no SNP metadata", "snp", **h.env(QEMU=good, CVM_FIRMWARE=plain))
    fw = h.firmware("snp.fd", SNP_GUID)
    rc, err = run_sh("snp", "--check", **h.env(QEMU=good, CVM_FIRMWARE=fw))
    assert rc == 0 and "the host has KVM with SNP" in err, (rc, err)

    refused("/sys/module/kvm_intel is missing", "tdx", **h.env(QEMU=good))
    h.param("kvm_intel", "tdx", "N")
    refused("tdx is 'N'", "tdx", **h.env(QEMU=good))
    h.param("kvm_intel", "tdx", "Y")
    refused("QEMU 10.0 is too old: tdx-guest needs QEMU >= 10.1", "tdx", **h.env(QEMU=good))
    newer = h.qemu("10.1.0", ["tdx-guest"])
    refused("has no TDX metadata", "tdx", **h.env(QEMU=newer, CVM_FIRMWARE=fw))
    fw = h.firmware("tdx.fd", TDX_GUID)
    rc, err = run_sh("tdx", "--check", **h.env(QEMU=newer, CVM_FIRMWARE=fw))
    assert rc == 0 and "the host has KVM with TDX" in err, (rc, err)


def vhd_footer_checks():
    """image/vhd-footer.py (the build's check of the Azure VHD) passes a fixed VHD of a
    whole MiB made by qemu-img, and fails one of another size, a dynamic VHD, a damaged
    checksum and a file that is no VHD."""
    d = os.path.join(WORK, "vhd")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tool = os.path.join(ROOT, "image", "vhd-footer.py")

    def vhd(name, size, subformat="fixed"):
        raw = os.path.join(d, name + ".raw")
        with open(raw, "wb") as f:
            f.truncate(size)
        out = os.path.join(d, name + ".vhd")
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vpc", "-o",
                        f"subformat={subformat},force_size=on", raw, out], check=True)
        return out

    def check(path, *args):
        r = subprocess.run([sys.executable, tool, *args, path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        return r.returncode, r.stdout

    good = vhd("good", 2 << 20)
    rc, out = check(good, "--expect-size", str(2 << 20))
    assert rc == 0 and "fixed VHD, 2097152 bytes (2 MiB)" in out, (rc, out)
    rc, out = check(good, "--expect-size", str(3 << 20))
    assert rc == 1 and "expected 3145728" in out, (rc, out)
    rc, out = check(vhd("odd", (2 << 20) + 512))
    assert rc == 1 and "not a whole number of MiB" in out, (rc, out)
    rc, out = check(vhd("dynamic", 2 << 20, "dynamic"))
    assert rc == 1 and "disk type 3, not 2 (fixed)" in out, (rc, out)
    with open(good, "r+b") as f:
        f.seek(-512 + 70, os.SEEK_END)      # inside the unique id: only the checksum notices
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 1]))
    rc, out = check(good)
    assert rc == 1 and "checksum" in out, (rc, out)
    rc, out = check(os.path.join(d, "good.raw"))
    assert rc == 1 and "cookie" in out, (rc, out)


CHECKS = [vhd_footer_checks, image_follows_kubelet, image_follows_every_variable, image_follows_join,
          failed_build_is_remade,
          test_image_has_its_own_inputs, run_cvm_refused_here, run_cvm_refusal_reasons]


def main():
    passed = failed = 0
    for check in CHECKS:
        t0 = time.monotonic()
        try:
            check()
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL image/{check.__name__}: {e}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"PASS image/{check.__name__} ({time.monotonic() - t0:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
