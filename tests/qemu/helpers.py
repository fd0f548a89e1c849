"""The helpers the QEMU scenarios share: boot and refusal expectations, the node
image and its disks, the state volume as stored, measured values and the UKI's
references. Imports only vm and hosttpm, so no scenario module imports another
(and nothing imports in a cycle)."""
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import uuid as uuid_mod
import zlib

import vm

import hosttpm
from pathlib import Path

from vm import REPO, TestFailure, VM, WORK_ROOT, boot, gpt_partitions, initrd_with, note, scaled


# --- from test_boot.py -------------------------------------------------------------

START = r"cvminit: cvminit (\S+) starting as PID 1"


# the device path may be followed by more words ("/dev/input/event1 and others")
READY = r"cvminit: ready: waiting for signals and the power button \((/dev/[^\s)]+)[^)]*\)"


BOOT_COMPLETE = r"cvminit: boot complete in (\d+) ms"


TIMELINE = r"cvminit: timeline: (\S+) (\d+(?:\.\d+)?) ms"


# generous: TCG boots take ~15 s (SeaBIOS) to ~35 s (OVMF) on 2 cores
FIRST_LINE_TIMEOUT = 240


STEP_TIMEOUT = 60


POWEROFF_BOUND = 30   # seconds from system_powerdown to QEMU's exit


def expect_start(v, label):
    v.wait_for(START, scaled(FIRST_LINE_TIMEOUT))
    first = v.find(r"cvminit: ")[0][0]
    note(f"{label}: first 'cvminit:' line {first:.1f} s after QEMU start")
    return first


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


# --- from test_image.py ------------------------------------------------------------

IMAGE_DIR = REPO / "build" / "image"


IMAGE = IMAGE_DIR / "cvminit.raw"


def image_or_fail():
    if not IMAGE.is_file():
        raise TestFailure(f"{IMAGE} is missing: run 'make image' (make check does)")
    return IMAGE


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_vm(name, timeout=400):
    """A VM booting a private copy of the image (tests never write the build output), with
    a join service holding the image's measurements as this VM boots it (product_join)."""
    work = WORK_ROOT / f"{name}-disk"
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(image_or_fail()), str(disk)], check=True)
    return VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
              name=name, memory=2048, timeout=scaled(timeout),
              join=product_join(name, IMAGE_DIR / "cvminit.efi"))


# --- from test_root.py -------------------------------------------------------------

def uki_cmdline(uki):
    """The UKI's embedded command line (its .cmdline PE section)."""
    data = open(uki, "rb").read()
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    table = pe + 24 + struct.unpack_from("<H", data, pe + 20)[0]
    for i in range(nsec):
        name, vsize, _, rawsize, rawptr = struct.unpack_from("<8sIIII", data, table + 40 * i)
        if name.rstrip(b"\0") == b".cmdline":
            return data[rawptr:rawptr + min(vsize, rawsize)].rstrip(b"\0").decode().strip()
    raise TestFailure(f"{uki} has no .cmdline section")


def roothash():
    """roothash= of the UKI the image boots (build/image/cvminit.efi, made with the disk)."""
    m = re.search(r"(?:^|\s)roothash=(\S+)", uki_cmdline(IMAGE_DIR / "cvminit.efi"))
    if not m or not re.fullmatch(r"[0-9a-f]{64}", m.group(1)):
        raise TestFailure("the UKI's command line has no roothash=<64 hex>")
    return m.group(1)


def disk_copy(name):
    work = WORK_ROOT / f"{name}-disk"
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(image_or_fail()), str(disk)],
                   check=True)
    return disk


# --- from test_node.py -------------------------------------------------------------

TEST_IMAGE = REPO / "build" / "image-test" / "cvminit.raw"


# kubelet as the node image starts it (its config, rootfs-overlay/etc/cvminit/).
KUBELET_ARGV = ("/usr/bin/kubelet --config=/etc/kubernetes/kubelet.yaml "
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock "
                "--kubeconfig=/etc/kubernetes/kubelet.conf "
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf")

NODE_STEP = 120


def node_disk(name):
    if not TEST_IMAGE.is_file():
        raise TestFailure(f"{TEST_IMAGE} is missing: run 'make test-image' (make check does)")
    work = WORK_ROOT / f"{name}-disk"
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(TEST_IMAGE), str(disk)], check=True)
    return disk


def node_vm(name, disk, tpm_from=None, nic="auto", join="default", **kw):
    """tpm_from: the vTPM state of an earlier boot (the state key is sealed to it).
    nic: as VM's (default: a restricted user network, which kubelet waits for).
    join: the join service kubelet waits for: "default" (a JoinService with the test
    image's measurements.json, as default_join), a JoinService, or None (no service:
    the node never starts kubelet)."""
    if join == "default":
        join = default_join(name) if nic is not None else None
    return VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
              name=name, memory=2048, timeout=scaled(600), tpm_from=tpm_from, nic=nic,
              join=join, **kw)


# --- the join service (docs/attestation.md, "Join") ----------------------------------

CVM_JOIN = REPO / "build" / "cvm-join"


# The host build of the node's agent (tests/qemu/test_join.py, test_attest.py).
AGENT_HOST = REPO / "build" / "agent-host" / "cvminit-agent"


# What cvm-join holds for the test image: PCR 11 at leave-initrd, since a node joins
# before kubelet, its last service, starts and `ready` is measured (the Makefile).
TEST_JOIN_MEASUREMENTS = REPO / "build" / "image-test" / "join-measurements.json"


# The development join service the images are built for by default (the Makefile's
# JOIN and JOIN_KEY): its private key, and the address QEMU's user network forwards.
DEV_JOIN_KEY = REPO / "build" / "join-dev" / "join-service.pem"
JOIN_ADDR = ("10.0.2.100", 7742)


# The stand-in API server's address as the guest sees it (guestfwd to 127.0.0.1).
API_ADDR = ("10.0.2.100", 6443)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_agent(port, timeout):
    """Until the agent answers through the forwarded port (QEMU accepts the connection on
    the host side even while nothing listens in the guest; the agent listens once it has
    made its EK and AK). Returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"CVMQ\x01\x01\x00\x20" + os.urandom(32))
                if s.recv(4) == b"CVMR":
                    return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise TestFailure(f"the agent did not answer on port {port} within {timeout} s")
        time.sleep(1)


def cluster_ca():
    """The run's stand-in cluster: a CA and the API server's certificate for API_ADDR's
    address (CN, which mbedtls 2.28 checks; no SAN), made once per run with openssl.
    Returns {"ca": pem path, "cert": ..., "key": ...}."""
    d = WORK_ROOT / "cluster-ca"
    out = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}
    if all(p.is_file() for p in out.values()):
        return out
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)

    def ossl(*args):
        r = subprocess.run(["openssl", *map(str, args)], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise TestFailure(f"openssl {' '.join(map(str, args))}: {r.stdout}")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
         "-subj", "/CN=cvminit-test cluster CA")
    ossl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
         "-subj", f"/CN={API_ADDR[0]}")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "30", "-out", "server.pem")
    return out


class ApiServer:
    """The stand-in API server: HTTPS (python3 ssl) on 127.0.0.1 with the certificate of
    cluster_ca(), reached by the guest at API_ADDR through guestfwd (a socat per
    connection). It answers every request 200 with one line and records the
    Authorization header of each in self.tokens."""

    def __init__(self):
        ca = cluster_ca()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(ca["cert"], ca["key"])
        self.tokens, self.requests = [], []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def guestfwd(self):
        return [(*API_ADDR, f"cmd:socat - TCP:127.0.0.1:{self.port}")]

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(30)
                with self.ctx.wrap_socket(conn, server_side=True) as c:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        k = c.recv(4096)
                        if not k:
                            break
                        data += k
                    head = data.decode(errors="replace").split("\r\n")
                    self.requests.append(head[0])
                    auth = [h.split(":", 1)[1].strip() for h in head[1:]
                            if h.lower().startswith("authorization:")]
                    self.tokens.append(auth[0] if auth else None)
                    body = b"cvminit-test-apiserver: hello kubelet\n"
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                              + body)
            except (OSError, ssl.SSLError) as e:
                self.requests.append(f"error: {e}")
                conn.close()

    def close(self):
        self.sock.close()


class JoinService:
    """cvm-join on 127.0.0.1 for one VM (VM(join=...) attaches it), reached by the guest at
    JOIN_ADDR through guestfwd: a socat per connection of the guest, so the service can
    be stopped and started again (on the same port) while the node retries.
    measurements: the measurements it attests against (default: the test image's
    join-measurements.json);
    key: its private key (default: the development key the images pin); server: the API
    server URL of the bundle; token: the bootstrap token (default: a random one);
    extra: more cvm-join arguments. The EK CA is the VM's (vm.ek_ca). Each start logs into
    <work>/<name>.join<N>.log; log() is all of them."""

    def __init__(self, name, measurements=None, key=None, server=None, token=None,
                 extra=()):
        self.name = name
        self.measurements = Path(measurements or TEST_JOIN_MEASUREMENTS)
        self.key = Path(key or DEV_JOIN_KEY)
        self.server = server or f"https://{API_ADDR[0]}:{API_ADDR[1]}"
        self.token = token or f"{secrets.token_hex(3)}.{secrets.token_hex(8)}"
        self.extra = list(extra)
        self.port = None
        self.proc = None
        self.ek_ca = None
        self.work = None
        self.logs = []
        self.started_at = []   # host monotonic times of each start

    def attach(self, vm):
        self.ek_ca = vm.ek_ca
        self.work = vm.work
        if self.measurements == Path("disk"):
            self.measurements = self._disk_measurements(vm)
        self.start()

    def _disk_measurements(self, vm):
        """join_measurements of the UKI on the VM's first disk (a test may have changed
        its command line and references: the join service then holds what that image
        measures), or the test image's when the disk is not a raw file (an NBD URL)."""
        d = vm.disks[0] if vm.disks else None
        opts = d if isinstance(d, dict) else {"file": str(d)}
        path = Path(str(opts.get("file", "")).rsplit(":", 1)[-1])
        if opts.get("format", "raw") != "raw" or not path.is_file():
            return TEST_JOIN_MEASUREMENTS
        uki = uki_from_disk(path, self.work / "join-uki.efi")
        return join_measurements(uki, self.work / "join-measurements.json")

    def detach(self, vm):
        self.stop()

    def guestfwd(self):
        return [(*JOIN_ADDR, f"cmd:socat - TCP:127.0.0.1:{self.port}")]

    def start(self, **changes):
        """Starts cvm-join (again), with attributes changed (key=, measurements=, ...)."""
        for k, v in changes.items():
            setattr(self, k, v)
        for f, what in ((CVM_JOIN, "make build/cvm-join"),
                        (self.measurements, "make test-image"), (self.key, "make test-image")):
            if not Path(f).is_file():
                raise TestFailure(f"{f} is missing ({what})")
        if self.port is None:
            self.port = free_port()
        ca = cluster_ca()
        tok = self.work / f"{self.name}.token"
        tok.write_text(self.token + "\n")
        log = self.work / f"{self.name}.join{len(self.logs) + 1}.log"
        self.logs.append(log)
        args = [str(CVM_JOIN), "--listen", f"127.0.0.1:{self.port}", "--key", str(self.key),
                "--measurements", str(self.measurements), *vm.ek_ca_args(self.ek_ca),
                "--server", self.server, "--cluster-ca", str(ca["ca"]), "--token", str(tok),
                *self.extra]
        (self.work / f"{self.name}.join{len(self.logs)}.cmd").write_text(" ".join(args) + "\n")
        with open(log, "w") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + 10
        while "listening" not in log.read_text():  # a probe would count as a join
            if self.proc.poll() is not None or time.monotonic() > end:
                raise TestFailure(f"cvm-join did not start (exit {self.proc.poll()}): "
                                  f"{log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.started_at.append(time.monotonic())
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, **changes):
        self.stop()
        return self.start(**changes)

    def log(self):
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def wait_log(self, regex, timeout):
        """Until a line of the service's log (any start) matches regex; the match."""
        rx = re.compile(regex, re.M)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > end:
                raise TestFailure(f"/{regex}/ not in cvm-join's log within {timeout:.0f} s:"
                                  f"\n{self.log()[-3000:]}")
            time.sleep(0.2)


def join_measurements(uki, out):
    """What cvm-join holds for a node booting uki as the test VMs boot (the disk first
    in the boot order, no failed boot option): cvm-measure predict --phase leave-initrd.
    build/image's own join-measurements.json is for `make run` (a DVD drive first)."""
    args = [str(CVM_MEASURE), "predict", "--uki", str(uki), "--failed-boot-options", "0",
            "--phase", "leave-initrd", "--json", str(out)]
    tcglog = REPO / "image" / "ovmf-q35.tcglog"
    if tcglog.is_file():
        args += ["--firmware-log", str(tcglog)]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}")
    return out


def product_join(name, uki):
    """A join service for a VM of the product image (build/image, made with the
    development JOIN and JOIN_KEY) whose UKI is uki."""
    work = WORK_ROOT / f"{name}-join"
    work.mkdir(parents=True, exist_ok=True)
    return JoinService(name, measurements=join_measurements(uki, work / "join.json"))


def default_join(name, **kw):
    """The join service every node boot of the test image gets unless it says otherwise
    (kubelet starts only after a join): it holds the measurements of the UKI on the VM's
    disk as booted there (measurements="disk"), so a test that changed the image on
    purpose still reaches kubelet; tests of refusals give measurements= themselves."""
    kw.setdefault("measurements", "disk")
    return JoinService(name, **kw)


# A service's line on the test channel: a kmsg record at LOG_DEBUG (7), "<name>: <line>".
SVC = r"^<7>\[[^\]]*\] "


STANDIN = SVC + "kubelet: kubelet-standin: "


def index_of(v, regex):
    return v.console.index_of(regex)


def machine_id_checked(v):
    """The machine ID kubelet reads from /etc/machine-id is the one cvminit logged, and that
    is SHA-256("cvminit machine-id:" + the state's LUKS2 UUID) as a version-4 UUID,
    computed here on its own."""
    m = v.wait_for(r"cvminit: state: machine ID ([0-9a-f]{32}) \(from LUKS2 ([0-9a-f-]{36})\)",
                   scaled(NODE_STEP), since=0)
    logged, luks_uuid = m.group(1), m.group(2)
    d = bytearray(hashlib.sha256(b"cvminit machine-id:" + luks_uuid.encode()).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x40
    d[8] = (d[8] & 0x3F) | 0x80
    if logged != d.hex():
        raise TestFailure(f"machine ID {logged} is not the one derived from {luks_uuid}: "
                          f"{d.hex()}")
    seen = v.chan.wait_for(STANDIN + r"machine-id: (.*)$", scaled(NODE_STEP), since=0).group(1)
    if seen.strip() != logged:
        raise TestFailure(f"kubelet read /etc/machine-id {seen!r}, cvminit made {logged}")
    return logged


# --- from test_measure.py ----------------------------------------------------------

CVM_MEASURE = REPO / "build" / "cvm-measure"


ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"


def esp_offset(disk):
    """Byte offset of the ESP in a GPT disk image."""
    parts = gpt_partitions(disk)
    if ESP_TYPE not in parts:
        raise TestFailure(f"{disk}: no ESP partition")
    return parts[ESP_TYPE][0]


def uki_from_disk(disk, out):
    """The UKI the firmware will boot: \\EFI\\BOOT\\BOOTX64.EFI from the disk's ESP, so the
    prediction is for the very bytes booted even if build/image is rebuilt meanwhile."""
    r = subprocess.run(["mcopy", "-n", "-o", "-i", f"{disk}@@{esp_offset(disk)}",
                        "::/EFI/BOOT/BOOTX64.EFI", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"mcopy of BOOTX64.EFI from the ESP failed: {r.stdout.strip()}")
    return out


UKI_REFS = REPO / "image" / "uki-refs.py"


def add_to_uki_cmdline(disk, cmdline_extra, keep_references=False):
    """Adds words to the command line of the UKI in disk's ESP (image/uki-refs.py); its
    references either left as built (drift) or rewritten to match (a consistent image
    that measures differently). Returns the command line the UKI was built with."""
    uki = uki_from_disk(disk, disk.parent / "BOOTX64.EFI")
    cmdline = re.search(r"^cmdline (.*)$", _references(uki), re.M).group(1)
    args = ["python3", str(UKI_REFS), "--uki", str(uki), "--disk", str(disk),
            "--cmdline", f"{cmdline} {cmdline_extra}"]
    if keep_references:
        args.append("--keep-references")
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"uki-refs.py failed: {r.stdout}")
    return cmdline


def _references(uki):
    data = open(uki, "rb").read()
    i = data.find(b"# cvminit reference values")
    if i < 0:
        raise TestFailure(f"{uki}: no filled-in reference values in the UKI's initrd")
    return data[i:data.index(b"\n\n", i)].decode()


def _standin_files(v):
    """The files the kubelet stand-in printed as base64 at its first start (read on the
    test channel): {guest path: bytes}."""
    chunks, done = {}, {}
    for _, s in v.chan.lines:
        m = re.search(r"kubelet-standin: file (\S+) ([A-Za-z0-9+/=]+)$", s)
        if m and m.group(1) not in done:
            chunks.setdefault(m.group(1), []).append(m.group(2))
        m = re.search(r"kubelet-standin: end (\S+) (\d+)$", s)
        if m and m.group(1) not in done:
            data = base64.b64decode("".join(chunks.get(m.group(1), [])))
            if len(data) != int(m.group(2)):
                raise TestFailure(f"{m.group(1)}: got {len(data)} bytes of {m.group(2)} "
                                  "(channel lines lost?)")
            done[m.group(1)] = data
    return done


READY_PCR15 = r"cvminit: measure: ready: PCR 15 (sha256|sha384) ([0-9a-f]+)$"


def pcr15_without_generation(v):
    """PCR 15 at `ready` (sha256, sha384) without this boot's `cvminit:generation` record:
    the part of PCR 15 that is the same at every boot of a node (docs/attestation.md,
    "Freshness": the generation and boot ID change each boot). cvminit's log, as the kubelet
    stand-in printed it, must replay to the values cvminit logged at `ready` and hold one
    extended generation record; the same replay without that record is returned,
    {bank: hex}."""
    ready = {}
    for bank in ("sha256", "sha384"):
        m = v.wait_for(READY_PCR15.replace("(sha256|sha384)", f"({bank})"),
                       scaled(NODE_STEP), since=0)
        ready[bank] = m.group(2)
    v.chan.wait_for(r"kubelet-standin: end /run/log/cvminit/measure.log \d+$",
                    scaled(NODE_STEP), since=0)
    recs = [json.loads(line) for line in
            _standin_files(v)["/run/log/cvminit/measure.log"].decode().splitlines() if line]
    recs = [r for r in recs if r["pcr"] == 15 and r["content"].get("extended")]
    gens = [r for r in recs if r["content"].get("string") == "cvminit:generation"]
    if len(gens) != 1:
        raise TestFailure(f"{len(gens)} extended cvminit:generation records in PCR 15's log")
    out = {}
    for bank, size in (("sha256", 32), ("sha384", 48)):
        full = rest = bytes(size)
        for r in recs:
            d = bytes.fromhex(next(x["digest"] for x in r["digests"] if x["hashAlg"] == bank))
            full = hashlib.new(bank, full + d).digest()
            if r is not gens[0]:
                rest = hashlib.new(bank, rest + d).digest()
        if full.hex() != ready[bank]:
            raise TestFailure(f"cvminit's log replays PCR 15 {bank} to {full.hex()}, but "
                              f"cvminit logged {ready[bank]} at ready")
        out[bank] = rest.hex()
    return out


def _cvm_measure(*args, check=True):
    r = subprocess.run([str(CVM_MEASURE), *map(str, args)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise TestFailure(f"cvm-measure {' '.join(map(str, args))}: exit {r.returncode}\n"
                          f"{r.stdout}\n{r.stderr}")
    return r


# --- from test_state.py ------------------------------------------------------------

STATE_TYPE = "4d21b016-b534-45c2-a9fb-5c16e091fd2d"


STATE_STEP = 180


HDR = 16384


DATA_OFFSET = 16 << 20


SECTOR = 512


BLANK = r"cvminit: state: (/dev/vda\d) \(partuuid \S+\) is blank: first boot"


MADE = (r"cvminit: state: first boot: (/dev/vda\d) is now LUKS2 (\S+) \((no integrity|with "
        r"hmac\(sha256\) integrity)\), key sealed to PCRs 4,7,11,15; seal (\d+) ms, format "
        r"(\d+) ms, (?:activate\+ends|activate) (\d+) ms, commit (\d+) ms")


ENDS = (r"cvminit: state: zeroed the first 8 and last 2 MiB of \S+ \((\d+) MiB\): what "
        r"probes read before anything is written")


# A read of the state volume that failed: dm-crypt's tag check (a sector whose tag was
# never written, or was tampered with), the block layer, ext4 or jbd2.
IO_ERRORS = (r"INTEGRITY AEAD ERROR|I/O error, dev dm-|Buffer I/O error on dev dm-|"
             r"EXT4-fs error|EXT4-fs warning|JBD2: .*(error|fail)")


DATA = r"kubelet-standin: /var data: (wrote|read back) 16 MiB of \S+ intact"


UNSEALED = (r"cvminit: state: (/dev/vda\d): LUKS2 (\S+) unsealed \(PCRs 4,7,11,15\) in (\d+) "
            r"ms, activated as (\S+) in (\d+) ms")


MEASURED = r"cvminit: state: measured (luks2:\S+) into PCR 15"


MOUNTED = r"cvminit: state: (/dev/vda\d) \(partuuid \S+, LUKS2 as \S+\) mounted on /var(.*) in"


CLOSED = r"cvminit: shutdown: closed the state volume"


def cryptsetup():
    for p in ("/usr/sbin/cryptsetup", "/sbin/cryptsetup"):
        if os.access(p, os.X_OK):
            return p
    raise TestFailure("cryptsetup is not installed (apt-get install cryptsetup-bin)")


def node(name, disk, tpm_from=None, blkdebug=None):
    """The node test image on disk, OVMF + UKI, with the vTPM of tpm_from (None: fresh)
    and the default join service. blkdebug: a config whose rules make some writes of the
    disk fail."""
    f = f"blkdebug:{blkdebug}:{disk}" if blkdebug else str(disk)
    return VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": f}], name=name,
              memory=2048, timeout=scaled(600), tpm_from=tpm_from, join=default_join(name))


def keep_tpm(v, dest):
    """Copies the vTPM state of a finished VM to dest (for the next boot)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(v.work / "tpm", dest)
    return dest


def state_part(disk):
    parts = gpt_partitions(disk)
    if STATE_TYPE not in parts:
        raise TestFailure(f"{disk}: no state partition")
    return parts[STATE_TYPE]


def read_part(disk, off, n):
    base, size = state_part(disk)
    with open(disk, "rb") as f:
        f.seek(base + off)
        return f.read(n)


def header_file(disk, out):
    """The state partition's first 16 MiB (metadata and keyslots) as a file."""
    with open(out, "wb") as f:
        f.write(read_part(disk, 0, DATA_OFFSET))
    return out


def luks_json(disk, work):
    hdr = header_file(disk, work / "state-header.img")
    r = subprocess.run([cryptsetup(), "luksDump", "--dump-json-metadata", str(hdr)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"cryptsetup luksDump of the state header failed: {r.stdout}")
    return json.loads(r.stdout), hdr


DIGEST_SIZES = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}


def firmware_sha256_extends(log):
    """(pcr, sha256 digest) of each event a TCG2 (crypto-agile) firmware log extended."""
    out = []
    # The first event is in the SHA1 format: pcr, type, sha1, size, data.
    size = struct.unpack_from("<I", log, 28)[0]
    p = 32 + size
    while p + 12 <= len(log):
        pcr, etype, count = struct.unpack_from("<III", log, p)
        p += 12
        sha256 = None
        for _ in range(count):
            alg = struct.unpack_from("<H", log, p)[0]
            n = DIGEST_SIZES[alg]
            if alg == 0x000B:
                sha256 = log[p + 2:p + 2 + n]
            p += 2 + n
        esize = struct.unpack_from("<I", log, p)[0]
        p += 4 + esize
        if etype != 3 and sha256 is not None:  # EV_NO_ACTION extends nothing
            out.append((pcr, sha256))
    return out


def cvminit_sha256_extends(log, until):
    """(pcr, sha256 digest) of cvminit's records before the first `until` event."""
    out = []
    for rec in log.split(b"\x1e"):
        if not rec.strip():
            continue
        r = json.loads(rec)
        if r["content"].get("string") == until:
            break
        if not r["content"].get("extended", True):
            continue
        d = [x["digest"] for x in r["digests"] if x["hashAlg"] == "sha256"]
        out.append((r["pcr"], bytes.fromhex(d[0])))
    return out


def replay_sealed_pcrs(tool, files, token):
    """Extends the token's PCRs (sha256) with what the node's logs say they got before it
    sealed: the firmware's events, then cvminit's before cvminit:state; checks the result
    is what the token recorded at sealing."""
    pcrs = token["tpm2-pcrs"]
    extends = (firmware_sha256_extends(files["/run/log/cvminit/firmware.log"])
               + cvminit_sha256_extends(files["/run/log/cvminit/measure.log"],
                                        "cvminit:state"))
    for pcr, dg in extends:
        if pcr in pcrs:
            tool("tpm2_pcrextend", f"{pcr}:sha256={dg.hex()}")
    got = tool("tpm2_pcrread", "sha256:" + ",".join(map(str, pcrs))).decode()
    for pcr, want in token["cvminit-pcr-values"].items():
        m = re.search(rf"^\s*{pcr}\s*:\s*0x([0-9A-Fa-f]+)", got, re.M)
        if not m or m.group(1).lower() != want:
            raise TestFailure(f"replaying the logs gives PCR {pcr} = "
                              f"{m.group(1).lower() if m else '?'}, the token "
                              f"recorded {want} at sealing")


def unseal_on_host(tpm_state, files, token, work):
    """Starts swtpm on a copy of the node's vTPM state, replays the sealed PCRs' extends
    the node logged before it sealed (replay_sealed_pcrs), and unseals the token's blob
    with tpm2-tools. Returns the key."""
    d = work / "host-tpm"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(tpm_state, d / "state")
    with hosttpm.host_tpm(d / "state", d) as tool:
        replay_sealed_pcrs(tool, files, token)
        blob = base64.b64decode(token["tpm2-blob"])
        n = 2 + struct.unpack_from(">H", blob, 0)[0]
        (d / "priv").write_bytes(blob[:n])
        (d / "pub").write_bytes(blob[n:])
        tool(*hosttpm.SRK_ARGS, "-c", "srk.ctx")
        tool("tpm2_flushcontext", "-t")
        tool("tpm2_load", "-Q", "-C", "srk.ctx", "-u", "pub", "-r", "priv", "-c", "obj.ctx")
        tool("tpm2_flushcontext", "-t")
        pcrs = ",".join(map(str, token["tpm2-pcrs"]))
        return tool("tpm2_unseal", "-c", "obj.ctx", "-p", f"pcr:sha256:{pcrs}")


def stage_ms(v, stage):
    """The +duration of a stage in cvminit's boot timeline."""
    hits = v.find(rf"cvminit: timeline: {re.escape(stage)} [\d.]+ ms \(\+([\d.]+) ms\)")
    return float(hits[-1][1].split("(+")[1].split(" ")[0]) if hits else None


def timeline_times(v):
    expect_boot_complete(v)
    return stage_ms(v, "state-open"), stage_ms(v, "state")


def var_checked(v, how):
    """The stand-in wrote (first start) or read back (later boot) its 16 MiB on /var, the
    ext4 error count is 0, and no read of the state volume failed."""
    m = v.chan.wait_for(DATA, scaled(STATE_STEP), since=0)
    if m.group(1) != how:
        raise TestFailure(f"expected the stand-in to have {how} its data: {m.group(0)}")
    v.chan.wait_for(r"kubelet-standin: /var ext4 errors: 0 ", scaled(STATE_STEP), since=0)
    v.chan.assert_absent(r"kubelet-standin: /var data: (?!wrote|read back)",
                    "the stand-in's data on /var")
    v.assert_absent(IO_ERRORS, "a read or write of the state volume failed")


_base = {}


def first_booted():
    """A node disk after its first boot and one power-off, with its vTPM state and what
    the stand-in printed. Made once per run."""
    if _base:
        return _base
    disk = node_disk("state_base")
    work = disk.parent
    with node("state_boot1", disk) as v:
        expect_start(v, "OVMF+UKI")
        dev = v.wait_for(BLANK, scaled(STATE_STEP), since=0).group(1)
        m = v.wait_for(MADE, scaled(STATE_STEP), since=0)
        uuid = m.group(2)
        setup = {k: int(m.group(i)) for i, k in enumerate(
            ("seal", "format", "activate", "commit"), start=4)}
        ident = v.wait_for(MEASURED, scaled(STATE_STEP), since=0).group(1)
        if m.group(3) != "with hmac(sha256) integrity":
            raise TestFailure(f"the default first boot made: {m.group(0)}")
        ends = int(v.wait_for(ENDS, scaled(STATE_STEP), since=0).group(1))
        if ident != f"luks2:{uuid}:aes-xts-plain64:512:4096:hmac(sha256)":
            raise TestFailure(f"measured {ident}")
        v.wait_for(r"cvminit: state: /dev/vda\d is blank: first boot, making ext4",
                   scaled(STATE_STEP), since=0)
        v.wait_for(r"cvminit: state: /dev/vda\d marked initialized in its LUKS2 token",
                   scaled(STATE_STEP), since=0)
        v.wait_for(MOUNTED + "", scaled(STATE_STEP), since=0)
        if not v.find(MOUNTED.replace("(.*) in", r" \(new filesystem\) in")):
            raise TestFailure("the first boot did not make a new filesystem")
        v.chan.wait_for(r"kubelet-standin: start 1 recorded", scaled(STATE_STEP), since=0)
        v.chan.wait_for(r"kubelet-standin: end /run/log/cvminit/firmware.log", scaled(STATE_STEP),
                        since=0)
        var_checked(v, "wrote")
        open_ms, mount_ms = timeline_times(v)
        files = _standin_files(v)
        power_off_via_button(v)
        v.wait_for(CLOSED, 5, since=0)
    tpm = keep_tpm(v, work / "tpm-after-boot1")
    _base.update(disk=disk, tpm=tpm, uuid=uuid, dev=dev, files=files, setup=setup,
                 first=(open_ms, mount_ms), ends=ends)
    return _base


def copy_base(name):
    b = first_booted()
    work = WORK_ROOT / f"{name}-disk"
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(b["disk"]), str(disk)], check=True)
    tpm = work / "tpm"
    shutil.rmtree(tpm, ignore_errors=True)
    shutil.copytree(b["tpm"], tpm)
    return disk, tpm


def blkdebug(work, name, disk, part_sector):
    """A blkdebug config making every write that touches one sector of the state
    partition fail with EIO."""
    base, _ = state_part(disk)
    conf = work / f"{name}.blkdebug"
    conf.write_text('[inject-error]\nevent = "write_aio"\niotype = "write"\nerrno = "5"\n'
                    f'sector = "{base // SECTOR + part_sector}"\nonce = "off"\n'
                    'immediately = "off"\n')
    return conf

