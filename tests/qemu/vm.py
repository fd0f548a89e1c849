"""QEMU harness for cvminit boot tests (Python 3 standard library only).

    from vm import VM, TestFailure
    with VM(kernel, initrd, "console=ttyS0,115200 panic=-1", name="boot") as vm:
        vm.wait_for(r"cvminit: .* starting as PID 1", timeout=60)
        vm.qmp("system_powerdown")
        vm.wait_exit(30)

Each VM gets build/test-work/<name>/ (wiped at start) holding console.log
(serial console, one line per console line, prefixed with the host monotonic
time in seconds since QEMU was started), channel.log (the test channel, same
form), qemu.log (QEMU's stderr), swtpm.log, the swtpm state, a private copy of
OVMF_VARS and the sockets.

The test channel is a second serial port (guest /dev/ttyS1) that only test
programs write to: the kubelet stand-in relays userspace kmsg records there
(cvminit's and the services', whose output never reaches the console) as
"K <seq> <level> [<guest seconds>] <text>", which the harness keeps as
"<level>[<guest seconds>] <text>", once per kmsg sequence number, so the
channel holds them in kmsg order; the bench probe writes its own lines there.
Read it with vm.chan.wait_for() / find() / assert_absent() / index_of(), the
console with the same methods on the VM itself.

QEMU: q35 with TCG (no KVM), OVMF (default) or SeaBIOS, swtpm as a TPM 2.0 CRB
device (default), direct kernel boot (-kernel/-initrd/-append), -no-reboot so
any guest reset or power-off ends QEMU. A QMP client is connected from the
start and records events (so a SHUTDOWN's reason is known after QEMU exits).

Any console line matching FAIL_PATTERNS (kernel panic, oops, segfault...)
makes the current or next wait_* call raise TestFailure with that line.
"""

import atexit
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK_ROOT = REPO / "build" / "test-work"

QEMU = "qemu-system-x86_64"
SWTPM = "swtpm"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"

BASE_CMDLINE = "console=ttyS0,115200 panic=-1"

# VM(disk_interface=...): the QEMU device of each disk. The SCSI disks hang off one
# virtio-scsi-pci controller (bus scsi0.0, added by qemu_args).
DISK_INTERFACES = {"virtio-blk": "virtio-blk-pci", "virtio-scsi": "scsi-hd,bus=scsi0.0",
                   "nvme": "nvme"}

# Console lines that fail a test at once. (name, regex)
FAIL_PATTERNS = [
    ("kernel panic", r"Kernel panic"),
    ("init killed", r"Attempted to kill init"),
    ("kernel BUG", r"\bBUG:"),
    ("kernel oops", r"\bOops\b"),
    ("general protection fault", r"general protection fault"),
    ("segfault", r"\bsegfault\b"),
    # The kernel's own WARN() (not a library's "WARNING:" text in a log line).
    ("kernel WARNING", r"WARNING: CPU: \d+ PID: \d+"),
    ("hung task", r"INFO: task \S+ blocked for more than \d+ seconds"),
    ("OOM kill", r"Out of memory: Killed process|invoked oom-killer"),
]

CONTEXT_LINES = 40
CHANNEL_CONTEXT_LINES = 15


class TestFailure(AssertionError):
    """A scenario failed; the message says why (with console context)."""


class Skip(Exception):
    """Raise from a scenario to report it as skipped."""


_live = set()          # VMs not yet cleaned up, for atexit
_live_lock = threading.Lock()


def _cleanup_all():
    with _live_lock:
        vms = list(_live)
    for v in vms:
        try:
            v.kill()
        except Exception:
            pass


atexit.register(_cleanup_all)


def _short_sock_dir(work):
    """AF_UNIX paths are limited to 107 bytes: use the work dir if it fits."""
    if len(str(work / "swtpm-ctrl.sock")) < 100:
        return work, None
    d = tempfile.mkdtemp(prefix="cvmvm.")
    return Path(d), d


class Stream:
    """One line stream of a VM, the serial console or the test channel: lines
    [(seconds since QEMU start, text)], and the cursor wait_for() searches from."""

    def __init__(self, vm, name):
        self.vm = vm
        self.name = name
        self.lines = []
        self.cursor = 0
        self.last_match_time = None

    def wait_for(self, regex, timeout=None, *, since=None):
        """See VM.wait_for; on this stream."""
        return self.vm._wait_for(self, regex, timeout, since)

    def find(self, regex):
        """All (time, line) seen so far that match regex."""
        rx = re.compile(regex)
        with self.vm._cond:
            return [(t, s) for t, s in self.lines if rx.search(s)]

    def index_of(self, regex):
        """The index of the first line matching regex; TestFailure when none does."""
        rx = re.compile(regex)
        with self.vm._cond:
            for i, (_, s) in enumerate(self.lines):
                if rx.search(s):
                    return i
        self.vm._fail(f"no {self.name} line matches /{regex}/")

    def assert_absent(self, regex, why=""):
        hits = self.find(regex)
        if hits:
            t, s = hits[0]
            self.vm._fail(f"unexpected {self.name} line at {t:.1f} s matching /{regex}/"
                          f"{': ' + why if why else ''}: {s.strip()}")


class VM:
    def __init__(self, kernel, initrd, cmdline, *, ovmf=True, tpm=True, disks=(),
                 timeout=300, name, memory=1024, smp=2, cpu="max",
                 extra_args=(), fail_patterns=None, echo=None, tpm_from=None,
                 tpm_dir=None, nic="auto", disk_interface="virtio-blk", ek_ca=None,
                 join=None):
        """kernel, initrd: paths. cmdline: the full kernel command line. With kernel None
               the firmware boots from the disks (OVMF: the ESP's \\EFI\\BOOT\\BOOTX64.EFI).
        ovmf: OVMF (UEFI) if True, SeaBIOS if False. tpm: attach swtpm (TPM 2.0, CRB).
        disks: paths of raw images (attached on disk_interface), or dicts of
               -drive options (file=..., and optionally format, readonly,
               cache...) plus "serial" (the disk's serial) and "device"
               (a QEMU device in place of disk_interface's; "nvme" needs a serial).
        disk_interface: how the disks are attached, as a cloud attaches a VM's OS disk:
               "virtio-blk" (virtio-blk-pci, /dev/vdX), "virtio-scsi" (scsi-hd on one
               virtio-scsi-pci controller, /dev/sdX) or "nvme" (one NVMe controller
               per disk, with a serial, /dev/nvmeXn1).
        timeout: overall bound in seconds for this VM (every wait is cut to it).
        name: work dir name under build/test-work/.
        fail_patterns: list of (name, regex) replacing FAIL_PATTERNS.
        tpm_from: a swtpm state directory (an earlier VM's work/tpm) to start from: the
              same vTPM (owner seed, so the same SRK) across boots, as a cloud keeps a
              VM's vTPM. None: a fresh vTPM.
        tpm_dir: a swtpm state directory used in place and kept after the VM (made when
              missing), e.g. a benchmark's node across its boots. Default: work/tpm.
        ek_ca: a directory for swtpm's local CA (made when missing): a fresh vTPM is
              manufactured with swtpm_setup --create-ek-cert, its EK certificate (RSA 2048,
              NV 0x01c00002) signed by that CA (ek_ca/issuercert.pem, whose root is
              ek_ca/swtpm-localca-rootca-cert.pem), with the banks a fresh swtpm has
              (sha1, sha256, sha384, sha512; swtpm_setup's default is sha256 alone).
        echo: callable(str) receiving each console line as it arrives (or None);
              defaults to printing when $CVM_TEST_ECHO is set.
        nic: None for no NIC; a dict for one virtio-net NIC on QEMU's user network,
              always with restrict=on (nothing leaves the host; the guest reaches only
              QEMU's DHCP/DNS/router and the guestfwd ports): "guestfwd" a list of
              (guest_ip, guest_port, host_port) to servers the test runs on 127.0.0.1,
              any other key a -netdev user option (net=, dns=, domainname=, ...);
              "auto" (default): {} when the firmware boots the disks (the node image
              needs a network before kubelet starts), None for a direct kernel boot.
              The NIC has no option ROM and the first disk comes first in the boot
              order, so OVMF never tries a network boot. A guestfwd's host_port may
              also be a string, QEMU's target as is: "cmd:socat - TCP:127.0.0.1:P"
              runs socat for each connection of the guest (a tcp: target is one
              connection, opened when QEMU starts).
        join: a join service for the node (helpers.JoinService): started before QEMU
              (join.attach(vm)), its guestfwd entries added to the NIC, stopped with
              the VM. Without ek_ca the VM then gets the run's shared EK CA
              (WORK_ROOT/ek-ca), so that the vTPM has the EK certificate the join
              service checks."""
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name or ""):
            raise ValueError(f"bad VM name {name!r}")
        self.kernel = str(kernel) if kernel else None
        self.initrd = str(initrd) if initrd else None
        self.cmdline = cmdline
        self.ovmf = ovmf
        self.tpm = tpm
        self.tpm_from = tpm_from
        self.tpm_dir = Path(tpm_dir) if tpm_dir else None
        self.join = join
        if join is not None and ek_ca is None:
            ek_ca = WORK_ROOT / "ek-ca"
        self.ek_ca = Path(ek_ca) if ek_ca else None
        self.disks = list(disks)
        if disk_interface not in DISK_INTERFACES:
            raise ValueError(f"bad disk interface {disk_interface!r}")
        self.disk_interface = disk_interface
        self.timeout = timeout
        self.name = name
        self.memory = memory
        self.smp = smp
        self.cpu = cpu
        self.extra_args = list(extra_args)
        if nic == "auto":
            nic = {} if kernel is None and self.disks else None
        self.nic = nic
        self.fail_patterns = [(n, re.compile(r)) for n, r in
                              (FAIL_PATTERNS if fail_patterns is None else fail_patterns)]
        if echo is None and os.environ.get("CVM_TEST_ECHO"):
            echo = lambda s: print(f"    | {s}", flush=True)
        self.echo = echo

        self.work = WORK_ROOT / name
        self.console = Stream(self, "console")  # the serial console (ttyS0)
        self.chan = Stream(self, "channel")     # the test channel (ttyS1)
        self._chan_seq = -1        # the highest kmsg sequence number seen on the channel
        self.failure = None        # (name, t, line) from the failure detectors
        self.qmp_events = []       # QMP event dicts, in arrival order
        self.returncode = None

        self._cond = threading.Condition()
        self._qemu = None
        self._swtpm = None
        self._t0 = None
        self._deadline = None
        self._threads = []
        self._console = None
        self._qmp_sock = None
        self._qmp_replies = queue.Queue()
        self._qmp_lock = threading.Lock()
        self._qmp_id = 0
        self._tmp_sock_dir = None
        self._qemu_eof = False
        self._cleaned = False

    # The console's lines, cursor and last match, as before there was a channel.
    lines = property(lambda self: self.console.lines)
    cursor = property(lambda self: self.console.cursor,
                      lambda self, v: setattr(self.console, "cursor", v))
    last_match_time = property(lambda self: self.console.last_match_time,
                               lambda self, v: setattr(self.console, "last_match_time", v))

    # ------------------------------------------------------------------ start

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc):
        self.kill()
        return False

    def start(self):
        for p, what in ((self.kernel, "kernel"), (self.initrd, "initrd")):
            if self.kernel and not os.path.isfile(p):
                raise TestFailure(f"{what} not found: {p}")
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        sockdir, self._tmp_sock_dir = _short_sock_dir(self.work)
        self.qmp_path = sockdir / "qmp.sock"
        self.chan_path = sockdir / "chan.sock"
        self.tpm_ctrl_path = sockdir / "swtpm-ctrl.sock"
        with _live_lock:
            _live.add(self)

        self._deadline = time.monotonic() + self.timeout
        if self.tpm:
            self._start_swtpm()
        if self.join is not None:
            if self.nic is None:
                raise ValueError("a join service needs the VM's NIC")
            self.join.attach(self)
            self.nic = dict(self.nic)
            self.nic["guestfwd"] = list(self.nic.get("guestfwd", [])) + self.join.guestfwd()
        args = self.qemu_args()
        (self.work / "qemu.cmd").write_text(" ".join(_shq(a) for a in args) + "\n")
        self._console = open(self.work / "console.log", "w", encoding="utf-8", buffering=1)
        self._chan_log = open(self.work / "channel.log", "w", encoding="utf-8", buffering=1)
        self._t0 = time.monotonic()
        with open(self.work / "qemu.log", "wb") as err:
            self._qemu = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                cwd=self.work, start_new_session=True)
        t = threading.Thread(target=self._read_console, name=f"{self.name}-console", daemon=True)
        t.start()
        self._threads.append(t)
        self._connect_qmp()
        self._connect_channel()

    def qemu_args(self):
        a = [QEMU, "-name", self.name,
             # Single-threaded TCG: with one host thread per vCPU (thread=multi)
             # the guest kernel twice oopsed on an int3 in sched_clock_cpu
             # while it patched a static key (a CI run and a make run, out of
             # some hundreds of boots); round-robin vCPUs cannot race a code
             # patch. Costs ~6% of a node boot. CVMINIT_TCG_THREAD=multi
             # brings the old mode back.
             "-machine", "q35",
             "-accel", "tcg,thread=" + os.environ.get("CVMINIT_TCG_THREAD", "single"),
             "-cpu", self.cpu,
             "-m", str(self.memory), "-smp", str(self.smp),
             "-nographic", "-no-reboot", "-no-user-config",
             # no default NIC (self.nic adds one without its iPXE ROM, which
             # costs seconds under TCG) and no VGA
             "-nic", "none", "-vga", "none"]
        if self.ovmf:
            vars_copy = self.work / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_copy)
            a += ["-drive", f"if=pflash,format=raw,unit=0,file={OVMF_CODE},readonly=on",
                  "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        if self.tpm:
            a += ["-chardev", f"socket,id=chrtpm,path={self.tpm_ctrl_path}",
                  "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                  "-device", "tpm-crb,tpmdev=tpm0"]
        if self.disk_interface == "virtio-scsi" and self.disks:
            a += ["-device", "virtio-scsi-pci,id=scsi0"]
        for i, d in enumerate(self.disks):
            opts = {"file": str(d)} if not isinstance(d, dict) else dict(d)
            dev = opts.pop("device", None)
            serial = opts.pop("serial", None)
            if dev is None:
                dev = DISK_INTERFACES[self.disk_interface]
                if self.disk_interface == "nvme" and not serial:
                    serial = f"cvmdisk{i}"
            opts.setdefault("format", "raw")
            opts.setdefault("cache", "unsafe")
            drive = {"if": "none", "id": f"disk{i}", **opts}
            a += ["-drive", ",".join(f"{k}={v}" for k, v in drive.items()),
                  "-device", f"{dev},drive=disk{i}" + (f",serial={serial}" if serial else "")
                  # The boot disk first: with a NIC OVMF would otherwise try
                  # the network, without one the DVD drive first, and each failed
                  # boot option adds records to PCR 4, which the state key is
                  # sealed to (a boot with a NIC and one without must match).
                  + (",bootindex=0" if i == 0 and self.kernel is None else "")]
        if self.nic is not None:
            opts = dict(self.nic)
            fwds = opts.pop("guestfwd", [])
            netdev = ["user", "id=n0", "restrict=on"]
            netdev += [f"{k}={v}" for k, v in opts.items()]
            netdev += [f"guestfwd=tcp:{ip}:{port}-" + (host if isinstance(host, str)
                                                         else f"tcp:127.0.0.1:{host}")
                       for ip, port, host in fwds]
            a += ["-netdev", ",".join(netdev),
                  "-device", "virtio-net-pci,netdev=n0,romfile="]
        if self.kernel:
            a += ["-kernel", self.kernel, "-initrd", self.initrd, "-append", self.cmdline]
        a += [# serial console on QEMU's stdout, which the harness reads
              "-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
              # the test channel: guest ttyS1, a socket the harness connects to
              # before the guest runs (QEMU drops what it writes while no one is)
              "-chardev", f"socket,id=chan0,path={self.chan_path},server=on,wait=off",
              "-serial", "chardev:chan0",
              "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
              "-monitor", "none"]
        return a + self.extra_args

    def _manufacture_tpm(self, state):
        t0 = time.monotonic()
        manufacture_tpm(state, self.ek_ca, self.work)
        self.manufacture_seconds = time.monotonic() - t0

    def _start_swtpm(self):
        state = self.tpm_dir or self.work / "tpm"
        if self.tpm_from:
            shutil.copytree(self.tpm_from, state)
        else:
            state.mkdir(parents=True, exist_ok=self.tpm_dir is not None)
            if self.ek_ca and not any(state.iterdir()):
                self._manufacture_tpm(state)
        args = [SWTPM, "socket", "--tpm2",
                "--tpmstate", f"dir={state}",
                "--ctrl", f"type=unixio,path={self.tpm_ctrl_path}",
                # no --flags startup-*: the firmware (or the kernel) sends TPM2_Startup;
                # no not-need-init: QEMU sends CMD_INIT on the control channel.
                "--terminate",
                "--log", f"file={self.work / 'swtpm.log'},level=1",
                "--pid", f"file={self.work / 'swtpm.pid'}"]
        (self.work / "swtpm.cmd").write_text(" ".join(_shq(x) for x in args) + "\n")
        with open(self.work / "swtpm.out", "wb") as out:
            self._swtpm = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 10
        while True:
            if self._swtpm.poll() is not None:
                raise TestFailure(f"swtpm exited ({self._swtpm.returncode}) at start: "
                                  + _tail(self.work / "swtpm.out"))
            if self.tpm_ctrl_path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(self.tpm_ctrl_path))
                    break
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > end:
                raise TestFailure("swtpm control socket did not appear within 10 s")
            time.sleep(0.02)

    # ---------------------------------------------------------------- console

    def _read_console(self):
        buf = b""
        out = self._qemu.stdout
        fd = out.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while True:
                i = buf.find(b"\n")
                if i < 0:
                    break
                self._add_line(buf[:i])
                buf = buf[i + 1:]
        if buf:
            self._add_line(buf)
        with self._cond:
            self._qemu_eof = True
            self._cond.notify_all()

    def _connect_channel(self):
        end = time.monotonic() + 20
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.chan_path))
                break
            except OSError:
                s.close()
            if self._qemu.poll() is not None or time.monotonic() > end:
                raise TestFailure("the test channel's socket did not appear")
            time.sleep(0.02)
        self._chan_sock = s
        t = threading.Thread(target=self._read_channel, name=f"{self.name}-channel",
                             daemon=True)
        t.start()
        self._threads.append(t)

    def _read_channel(self):
        buf = b""
        while True:
            try:
                chunk = self._chan_sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *whole, buf = buf.split(b"\n")
            for raw in whole:
                self._add_chan_line(raw)
        if buf:
            self._add_chan_line(buf)

    def _add_chan_line(self, raw):
        t = time.monotonic() - self._t0
        # OVMF writes its console to every serial port: the channel has its lines too.
        text = _plain(raw)
        m = re.match(r"K (\d+) (\d) (.*)$", text)
        if m:
            # A relayed kmsg record: each stand-in start replays the buffer.
            seq = int(m.group(1))
            if seq <= self._chan_seq:
                return
            self._chan_seq = seq
            text = f"<{m.group(2)}>{m.group(3)}"
        try:
            self._chan_log.write(f"[{t:9.3f}] {text}\n")
        except ValueError:
            pass
        if self.echo:
            self.echo(f"[{t:8.3f}] chan {text}")
        self._append(self.chan, t, text)

    def _add_line(self, raw):
        t = time.monotonic() - self._t0
        text = _plain(raw)
        try:
            self._console.write(f"[{t:9.3f}] {text}\n")
        except ValueError:
            pass
        if self.echo:
            self.echo(f"[{t:8.3f}] {text}")
        self._append(self.console, t, text)

    def _append(self, stream, t, text):
        with self._cond:
            stream.lines.append((t, text))
            if self.failure is None:
                for fname, rx in self.fail_patterns:
                    if rx.search(text):
                        self.failure = (fname, t, text, stream.name)
                        break
            self._cond.notify_all()

    def console_tail(self, n=CONTEXT_LINES):
        with self._cond:
            tail = self.lines[-n:]
        return "\n".join(f"    [{t:8.3f}] {s}" for t, s in tail)

    def _fail(self, msg):
        with self._cond:
            chan = self.chan.lines[-CHANNEL_CONTEXT_LINES:]
        tail = ("\n  last channel lines ({}):\n".format(self.work / "channel.log")
                + "\n".join(f"    [{t:8.3f}] {s}" for t, s in chan)) if chan else ""
        raise TestFailure(f"{msg}\n  last {CONTEXT_LINES} console lines "
                          f"({self.work / 'console.log'}):\n{self.console_tail()}{tail}")

    def _check_failure(self):
        if self.failure is not None:
            fname, t, text, where = self.failure
            self._fail(f"{fname} on the {where} at {t:.1f} s: {text.strip()}")

    def _bound(self, timeout):
        now = time.monotonic()
        left = self._deadline - now
        if timeout is None or timeout > left:
            return max(left, 0), True
        return timeout, False

    def check(self):
        """Raise TestFailure if a failure pattern has been seen."""
        with self._cond:
            self._check_failure()

    def wait_for(self, regex, timeout=None, *, since=None):
        """Wait for a console line matching regex (re.search), looking at lines
        after the previous match (or from index since). Returns the re.Match;
        self.last_match_time holds the line's timestamp. On timeout, QEMU exit
        or a failure pattern, raises TestFailure with the last console lines.
        vm.chan.wait_for() does the same on the test channel."""
        return self._wait_for(self.console, regex, timeout, since)

    def _wait_for(self, stream, regex, timeout, since):
        rx = re.compile(regex)
        timeout, overall = self._bound(timeout)
        end = time.monotonic() + timeout
        pos = stream.cursor if since is None else since
        where = "" if stream is self.console else f" on the {stream.name}"
        with self._cond:
            while True:
                self._check_failure()
                while pos < len(stream.lines):
                    t, text = stream.lines[pos]
                    pos += 1
                    m = rx.search(text)
                    if m:
                        stream.cursor = pos
                        stream.last_match_time = t
                        return m
                if self._qemu_eof:
                    self._fail(f"QEMU exited (rc {self._qemu.poll()}) before /{regex}/ "
                               f"appeared{where}{self._qemu_stderr_hint()}")
                left = end - time.monotonic()
                if left <= 0:
                    what = "the VM's overall timeout" if overall else "timeout"
                    self._fail(f"/{regex}/ not seen{where} within {timeout:.0f} s ({what})")
                self._cond.wait(min(left, 1.0))

    def find(self, regex):
        """All (time, line) of the console seen so far that match regex."""
        return self.console.find(regex)

    def index_of(self, regex):
        return self.console.index_of(regex)

    def assert_absent(self, regex, why=""):
        self.console.assert_absent(regex, why)

    def wait_exit(self, timeout=None):
        """Wait for QEMU to exit; return its exit code. Fails on timeout or
        if a failure pattern was seen."""
        timeout, overall = self._bound(timeout)
        try:
            rc = self._qemu.wait(timeout)
        except subprocess.TimeoutExpired:
            self.check()
            self._fail(f"QEMU still running {timeout:.0f} s later "
                       f"({'the VM overall timeout' if overall else 'timeout'})")
        self.returncode = rc
        for t in self._threads:
            t.join(5)
        self.check()
        return rc

    def exit_time(self):
        """Seconds since QEMU start at which it exited (None while running)."""
        return getattr(self, "_exit_t", None)

    def shutdown_reason(self):
        """The reason of the last QMP SHUTDOWN event (guest-shutdown,
        guest-reset, guest-panic, host-qmp-quit, ...) or None."""
        for ev in reversed(self.qmp_events):
            if ev.get("event") == "SHUTDOWN":
                return ev.get("data", {}).get("reason")
        return None

    def _qemu_stderr_hint(self):
        err = _tail(self.work / "qemu.log", 5)
        return f"; qemu stderr: {err}" if err else ""

    # -------------------------------------------------------------------- QMP

    def _connect_qmp(self):
        end = time.monotonic() + 20
        while True:
            if self._qemu.poll() is not None:
                raise TestFailure(f"QEMU exited ({self._qemu.returncode}) at start"
                                  f"{self._qemu_stderr_hint()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.qmp_path))
                break
            except OSError:
                s.close()
            if time.monotonic() > end:
                raise TestFailure("QMP socket did not appear within 20 s")
            time.sleep(0.02)
        self._qmp_sock = s
        self._qmp_file = s.makefile("rb")
        s.settimeout(20)
        try:
            greeting = json.loads(self._qmp_file.readline() or b"{}")
        except (OSError, ValueError) as e:
            raise TestFailure(f"no QMP greeting from QEMU: {e}")
        s.settimeout(None)
        if "QMP" not in greeting:
            raise TestFailure(f"unexpected QMP greeting: {greeting}")
        t = threading.Thread(target=self._read_qmp, name=f"{self.name}-qmp", daemon=True)
        t.start()
        self._threads.append(t)
        self.qmp("qmp_capabilities")

    def _read_qmp(self):
        try:
            for raw in self._qmp_file:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if "event" in msg:
                    with self._cond:
                        self.qmp_events.append(msg)
                        if msg["event"] == "SHUTDOWN":
                            self._exit_t = time.monotonic() - self._t0
                        self._cond.notify_all()
                else:
                    self._qmp_replies.put(msg)
        except (OSError, ValueError):
            pass
        self._qmp_replies.put(None)

    def qmp(self, command, arguments=None, timeout=30, **kwargs):
        """Execute a QMP command; return its "return" value. Keyword arguments
        become the command's arguments (use arguments={...} for names that are
        not Python identifiers). Events are recorded in self.qmp_events."""
        args = dict(arguments or {}, **kwargs)
        with self._qmp_lock:
            self._qmp_id += 1
            req = {"execute": command, "id": self._qmp_id}
            if args:
                req["arguments"] = args
            try:
                self._qmp_sock.sendall(json.dumps(req).encode() + b"\n")
            except OSError as e:
                self._fail(f"QMP {command}: send failed: {e}")
            end = time.monotonic() + timeout
            while True:
                try:
                    msg = self._qmp_replies.get(timeout=max(end - time.monotonic(), 0.01))
                except queue.Empty:
                    self._fail(f"QMP {command}: no reply within {timeout} s")
                if msg is None:
                    self._qmp_replies.put(None)
                    self._fail(f"QMP {command}: connection closed (QEMU exited?)"
                               f"{self._qemu_stderr_hint()}")
                if msg.get("id") != self._qmp_id:
                    continue
                if "error" in msg:
                    raise TestFailure(f"QMP {command} failed: {msg['error']}")
                return msg.get("return")

    # ---------------------------------------------------------------- cleanup

    def kill(self):
        """Stop QEMU and swtpm (if running) and release everything. Idempotent."""
        if self._cleaned:
            return
        self._cleaned = True
        if self.join is not None:
            self.join.detach(self)
        for p in (self._qemu, self._swtpm):
            if p is None or p.poll() is not None:
                continue
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        if self._qemu is not None and self.returncode is None:
            self.returncode = self._qemu.poll()
        for t in self._threads:
            t.join(2)
        for f in (self._qmp_sock, self._console, getattr(self, "_chan_sock", None),
                  getattr(self, "_chan_log", None)):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        if self._qemu is not None and self._qemu.stdout:
            self._qemu.stdout.close()
        if self._tmp_sock_dir:
            shutil.rmtree(self._tmp_sock_dir, ignore_errors=True)
        with _live_lock:
            _live.discard(self)


def manufacture_tpm(state, ca, work):
    """A vTPM in state with an EK certificate from the local CA in directory ca (made when
    missing), as a cloud's vTPM has one: swtpm_setup --create-ek-cert (RSA 2048, NV
    0x01c00002), signed by ca/issuercert.pem, whose root is
    ca/swtpm-localca-rootca-cert.pem; the banks a fresh swtpm has. Logs into work."""
    ca = Path(ca)
    ca.mkdir(parents=True, exist_ok=True)
    conf = work / "swtpm-localca.conf"
    conf.write_text(f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
                    f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n")
    setup = work / "swtpm_setup.conf"
    setup.write_text(f"create_certs_tool = /usr/bin/swtpm_localca\n"
                     f"create_certs_tool_config = {conf}\n"
                     f"create_certs_tool_options = /etc/swtpm-localca.options\n")
    r = subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state),
                        "--create-ek-cert", "--pcr-banks", "sha1,sha256,sha384,sha512",
                        "--config", str(setup), "--overwrite"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (work / "swtpm_setup.log").write_text(r.stdout)
    if r.returncode != 0:
        raise TestFailure(f"swtpm_setup failed ({r.returncode}): {r.stdout[-2000:]}")


def ek_ca_args(ca):
    """cvm-measure attest's and cvm-join's --ek-ca arguments for the CA of manufacture_tpm."""
    ca = Path(ca)
    return ["--ek-ca", str(ca / "issuercert.pem"), "--ek-ca",
            str(ca / "swtpm-localca-rootca-cert.pem")]


def _plain(raw):
    """A serial line as text, without CRs and terminal escape sequences (OVMF draws its
    screen with them)."""
    text = raw.decode("utf-8", "replace").replace("\r", "")
    return re.sub(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1bc", "", text)


def _shq(s):
    s = str(s)
    return s if re.fullmatch(r"[A-Za-z0-9_./=,:+@%-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def _tail(path, n=10):
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


# ------------------------------------------------------------ runner defaults
# run.py fills these in; scenarios use boot() so they need not know paths.

class Config:
    kernel = None          # vmlinuz path
    initrd = None          # the run's initrd (init/modules.list + build/cvminit)
    ovmf = True            # default firmware for scenarios that do not choose
    timeout_scale = 1.0    # multiply scenario timeouts (slow machines)
    notes = []             # extra lines the runner prints after a scenario
    current = None         # name of the running scenario (default VM name)
    mkinitrd = None        # the mkinitrd.py command of the run's initrd, without --output
    missing = None         # why no VM can boot (no kernel, no cvminit), or None
    strict = False         # missing prerequisites fail instead of skip


config = Config()


def note(msg):
    """Record a line for the runner to print under the scenario's result."""
    config.notes.append(msg)


def boot(extra_cmdline="", *, name=None, initrd=None, ovmf=None, timeout=300, **kw):
    """A VM with the run's kernel/initrd and BASE_CMDLINE + extra_cmdline.
    name defaults to the running scenario's name; ovmf to the run's default."""
    if config.kernel is None or config.initrd is None:
        why = config.missing or "no kernel/initrd configured (run through tests/qemu/run.py)"
        raise (TestFailure if config.strict else Skip)(why)
    name = name or config.current or "vm"
    cmdline = (BASE_CMDLINE + " " + extra_cmdline).strip()
    return VM(config.kernel, initrd or config.initrd, cmdline,
              ovmf=config.ovmf if ovmf is None else ovmf,
              timeout=timeout * config.timeout_scale, name=name, **kw)


def gpt_partitions(disk):
    """{type uuid: (first byte, size in bytes)} from the disk's GPT (512-byte sectors)."""
    out = {}
    with open(disk, "rb") as f:
        f.seek(512)
        hdr = f.read(92)
        if hdr[:8] != b"EFI PART":
            raise TestFailure(f"{disk}: no GPT header")
        lba, count, size = struct.unpack_from("<QII", hdr, 72)
        f.seek(lba * 512)
        table = f.read(count * size)
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        out[str(uuid.UUID(bytes_le=e[:16]))] = (first * 512, (last - first + 1) * 512)
    return out


# The kubelet stand-in (make build/kubelet-standin); `--relay-only` makes it the test
# channel's relay and nothing else, for initrd scenarios whose services' output is checked.
STANDIN = REPO / "build" / "kubelet-standin"
RELAY_SERVICE = "service relay\n\texec /usr/bin/kubelet-standin --relay-only\n"


def initrd_with(files, name=None, *, programs=None):
    """The run's initrd plus files: {dest path in the initrd: text}, and programs:
    {dest path: host path} (mode 0755). Returns its path."""
    if config.mkinitrd is None:
        raise (TestFailure if config.strict else Skip)(config.missing or "no initrd")
    name = name or config.current or "vm"
    work = WORK_ROOT / f"{name}-initrd"
    work.mkdir(parents=True, exist_ok=True)
    cmd = list(config.mkinitrd)
    for i, (dest, text) in enumerate(sorted(files.items())):
        src = work / f"file{i}"
        src.write_text(text)
        cmd += ["--file", f"{src}:{dest}:0644"]
    for dest, src in sorted((programs or {}).items()):
        if not os.path.isfile(src):
            raise TestFailure(f"{src} is missing (make {Path(src).relative_to(REPO)})")
        cmd += ["--file", f"{src}:{dest}:0755"]
    out = work / "initrd.cpio"
    r = subprocess.run(cmd + ["--output", str(out)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"mkinitrd failed: {r.stdout[-2000:]}")
    return str(out)


def scaled(seconds):
    return seconds * config.timeout_scale
