"""The join protocol on the host: cvminit-agent --join (the host build) on a swtpm with an
EK certificate, cvm-join on loopback. A node whose PCRs match measurements.json gets its
bootstrap kubeconfig; one PCR altered in measurements.json, or a service that cannot prove
the pinned key, and it gets nothing. (The QEMU boot with kubelet ordered after the join is
not written yet: docs/attestation.md, "What remains".)"""
import base64
import re
import shutil
import socket
import subprocess
import time
from uuid import uuid4

from test_attest import AGENT_HOST, free_port, wait_agent
import hosttpm
from vm import REPO, VM, TestFailure, note, scaled

CVM_JOIN = REPO / "build" / "cvm-join"


def _key(path):
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(path)], check=True,
                   capture_output=True)
    pub = path.with_suffix(".pub.pem")
    subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True)
    return pub


def _recv(s, n):
    b = b""
    while len(b) < n:
        k = s.recv(n - len(b))
        if not k:
            raise TestFailure(f"connection closed after {len(b)} of {n} bytes")
        b += k
    return b


def relay(jport, aport, pub):
    """The host's attack: a hello with its own key to cvm-join, then cvm-join's attest
    requests passed to the node's agent and its answers back. Returns the verdict's type
    (3 bundle, 4 refused)."""
    with socket.create_connection(("127.0.0.1", jport), timeout=60) as j, \
            socket.create_connection(("127.0.0.1", aport), timeout=60) as a:
        j.sendall(b"CVMJ\x01\x01\x00\x61" + pub + bytes(32))
        hdr = _recv(j, 8)
        _recv(j, int.from_bytes(hdr[6:8], "big"))
        while True:
            hdr = _recv(j, 8)
            body = _recv(j, int.from_bytes(hdr[6:8], "big"))
            if hdr[:4] == b"CVMJ":
                return hdr[5]
            a.sendall(hdr + body)
            rh = _recv(a, 10)
            j.sendall(rh + _recv(a, int.from_bytes(rh[6:10], "big")))


def test_join_host():
    """A good node joins (the kubeconfig has the server, the CA and the token); a node
    measured otherwise than measurements.json (PCR 4 altered there) is refused and writes
    nothing, the mismatch logged by cvm-join; a node pinning another service key refuses
    the service before it quotes anything; the host relaying cvm-join's requests to the
    node's attest agent under its own key is refused; an unreachable service is retried,
    then given up."""
    for b in (AGENT_HOST, CVM_JOIN):
        if not b.is_file():
            raise TestFailure(f"{b} is missing: make {b.relative_to(REPO)}")
    work = REPO / "build" / "test-work" / "join_host"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    ca, state = work / "ca", work / "tpm"
    v = VM.__new__(VM)  # only for its swtpm manufacturing helper
    v.work, v.ek_ca = work, ca
    state.mkdir()
    v._manufacture_tpm(state)
    svc_pub = _key(work / "svc.pem")
    other_pub = _key(work / "other.pem")
    (work / "cluster-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                         "-----END CERTIFICATE-----\n")
    (work / "token").write_text("abcdef.0123456789abcdef\n")
    good, bad = work / "good.json", work / "bad.json"
    good.write_text('{"4": {"expected": "' + "00" * 32 + '", "warnOnly": false}}\n')
    bad.write_text('{"4": {"expected": "' + "11" * 32 + '", "warnOnly": false}}\n')
    swtpm, tport = hosttpm.start_swtpm(state)  # a free port pair, answering

    def service(measurements, name):
        port = free_port()
        log = open(work / f"{name}.join.log", "w")
        p = subprocess.Popen([str(CVM_JOIN), "--listen", f"127.0.0.1:{port}", "--key",
                              str(work / "svc.pem"), "--measurements", str(measurements),
                              "--ek-ca", str(ca / "issuercert.pem"), "--ek-ca",
                              str(ca / "swtpm-localca-rootca-cert.pem"), "--server",
                              "https://10.0.2.2:6443", "--cluster-ca",
                              str(work / "cluster-ca.pem"), "--token", str(work / "token"),
                              "--max-joins", "1"], stdout=log, stderr=subprocess.STDOUT)
        for _ in range(100):  # listening (a probe connection would count as a join)
            if "listening" in (work / f"{name}.join.log").read_text():
                break
            time.sleep(0.1)
        return p, port

    def node_cmd(port, pinned, out, tries=3):
        return [str(AGENT_HOST), "--tcti", "swtpm", "--tcti-conf",
                               f"host=127.0.0.1,port={tport}", "--tsm", "none",
                               "--log", str(work / "none"), "--firmware-log",
                               str(work / "none"), "--join", f"127.0.0.1:{port}",
                               "--join-key", str(pinned), "--join-out", str(out),
                               "--join-tries", str(tries)]

    def node(port, pinned, out, tries=3, extra=()):
        return subprocess.run(node_cmd(port, pinned, out, tries) + list(extra),
                              capture_output=True, text=True, timeout=scaled(120))

    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", tport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        # 1. A good node joins; its ready socket (what kubelet's `after join` waits
        # for) appears only once the kubeconfig is in place.
        svc, port = service(good, "good")
        out = work / "bootstrap-kubelet.conf"
        ready = work / "join.sock"
        t0 = time.monotonic()
        p = subprocess.Popen(node_cmd(port, svc_pub, out) + ["--join-ready", str(ready)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while not ready.exists():
            if p.poll() is not None or time.monotonic() - t0 > scaled(60):
                p.kill()
                log = (work / "good.join.log").read_text()
                raise TestFailure(f"good node: no ready socket, exit {p.poll()}\n"
                                  f"{p.communicate()[0]}\n{log}")
            time.sleep(0.02)
        took = time.monotonic() - t0
        joined = out.is_file()
        socket.socket(socket.AF_UNIX).connect(str(ready))  # cvminit's readiness probe
        p.terminate()
        p.wait(scaled(10))
        svc.wait(scaled(30))
        log = (work / "good.join.log").read_text()
        if not joined:
            raise TestFailure("the ready socket appeared before the kubeconfig was written")
        if p.returncode != 0 or ready.exists():
            raise TestFailure(f"good node: exit {p.returncode} after SIGTERM, socket left "
                              f"{ready.exists()}")
        conf = out.read_text()
        want_ca = base64.b64encode((work / "cluster-ca.pem").read_bytes()).decode()
        for want in ("server: https://10.0.2.2:6443", "token: abcdef.0123456789abcdef",
                     f"certificate-authority-data: {want_ca}"):
            if want not in conf:
                raise TestFailure(f"the bootstrap kubeconfig lacks {want!r}:\n{conf}")
        if (out.stat().st_mode & 0o777) != 0o600:
            raise TestFailure(f"{out} mode {oct(out.stat().st_mode)}")
        for want in ("AK binding: ok", "ATTESTED", "JOINED"):
            if want not in log:
                raise TestFailure(f"cvm-join's log lacks {want!r}:\n{log}")
        # 2. Another measurement: refused, nothing written, the mismatch logged.
        svc, port = service(bad, "bad")
        out2 = work / "refused.conf"
        console = work / "console"
        r = node(port, svc_pub, out2, extra=["--join-ready", str(work / "bad.sock"),
                                             "--console", str(console)])
        svc.wait(scaled(30))
        log = (work / "bad.join.log").read_text()
        said = console.read_text() if console.exists() else ""
        if "join: REFUSED by the join service" not in said or "abcdef" in said:
            raise TestFailure(f"the refused node's console says: {said!r}")
        if (work / "bad.sock").exists():
            raise TestFailure("a refused node made its ready socket: kubelet would start")
        if r.returncode != 3 or out2.exists():
            raise TestFailure(f"refused node: exit {r.returncode}, wrote "
                              f"{out2.exists()}\n{r.stderr}\n{log}")
        if "REFUSED by the join service" not in r.stderr or "abcdef" in r.stderr:
            raise TestFailure(f"refused node's output:\n{r.stderr}")
        for want in ("PCR 4 sha256: MISMATCH", "REFUSED: attestation refused"):
            if want not in log:
                raise TestFailure(f"cvm-join's log lacks {want!r}:\n{log}")
        # 3. Impersonation: the node pins another key; it quotes nothing.
        svc, port = service(good, "imp")
        out3 = work / "imp.conf"
        r = node(port, other_pub, out3)
        svc.wait(scaled(30))
        log = (work / "imp.join.log").read_text()
        if r.returncode != 3 or out3.exists() or "did not prove the pinned key" not in r.stderr:
            raise TestFailure(f"impersonation: exit {r.returncode}\n{r.stderr}")
        if "nonce" in log or "JOINED" in log:
            raise TestFailure(f"the node answered a service that did not prove its key:\n{log}")
        # 4. The host relays cvm-join's requests to the node's attest agent (which quotes
        # any nonce a verifier sends) under a hello with a key of its own: the quote
        # lacks the join tag, refused, no bundle.
        aport = free_port()
        agent = subprocess.Popen([str(AGENT_HOST), "--port", str(aport), "--tcti", "swtpm",
                                  "--tcti-conf", f"host=127.0.0.1,port={tport}", "--tsm",
                                  "none", "--log", str(work / "none"), "--firmware-log",
                                  str(work / "none")], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            wait_agent(aport, scaled(30))
            svc, port = service(good, "relay")
            der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(other_pub),
                                  "-outform", "DER"], check=True, capture_output=True).stdout
            got = relay(port, aport, der[-65:])  # a point on the curve, the host's key
            svc.wait(scaled(30))
        finally:
            agent.terminate()
            agent.wait()
        log = (work / "relay.join.log").read_text()
        if got != 4 or "JOINED" in log or "qualifying data" not in log:
            raise TestFailure(f"relay through the attest agent: verdict type {got}\n{log}")
        # 5. Nobody listening: retried with backoff, then given up.
        t1 = time.monotonic()
        r = node(free_port(), svc_pub, work / "none.conf", tries=2)
        if r.returncode != 1 or "gave up after 2 attempts" not in r.stderr:
            raise TestFailure(f"unreachable: exit {r.returncode}\n{r.stderr}")
        if time.monotonic() - t1 < 1:
            raise TestFailure("no backoff between the attempts")
        note(f"join: a good node joined in {took:.2f} s (swtpm, loopback)")
    finally:
        swtpm.kill()
        swtpm.wait()


NODE_RECORDS = REPO / "build" / "unit" / "node-records"


def test_join_host_freshness():
    """cvm-join --state on host processes: each "boot" of the node is a swtpm restarted
    on the same state (PCRs reset) and a new event log, into which node-records measures
    PCR 15's per-node records with the functions cvminit uses (the volume key's HMAC,
    then generation_measure() on a counter directory that stands for /var). A new node
    joins at generation 1 (ENROLLED), again at 2; the counter directory put back as
    boot 1 left it: refused as rolled back; another volume key: refused as swapped;
    `cvm-join enrol` lets that node back, recorded; the service stopped right after it
    stored a request (--stop-after-request) and the node's retry in the same boot
    joins. Each refusal's reason is on the node's console, with no secret."""
    for b in (AGENT_HOST, CVM_JOIN, NODE_RECORDS):
        if not b.is_file():
            raise TestFailure(f"{b} is missing: make {b.relative_to(REPO)}")
    work = REPO / "build" / "test-work" / "join_fresh"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    ca, tpm = work / "ca", work / "tpm"
    v = VM.__new__(VM)  # only for its swtpm manufacturing helper
    v.work, v.ek_ca = work, ca
    tpm.mkdir()
    v._manufacture_tpm(tpm)
    svc_pub = _key(work / "svc.pem")
    (work / "cluster-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                         "-----END CERTIFICATE-----\n")
    (work / "token").write_text("abcdef.0123456789abcdef\n")
    good = work / "good.json"
    good.write_text('{"4": {"expected": "' + "00" * 32 + '", "warnOnly": false}}\n')
    store, var = work / "store", work / "var"
    store.mkdir()
    var.mkdir()
    k1, k2 = "11" * 64, "22" * 64
    uuid = "3f0c1e2a-0000-4000-8000-000000000001"
    cur = {"swtpm": None, "port": 0, "log": None}
    seq = iter(range(1, 100))

    def boot(key, fresh=False):
        """A node boot: PCRs reset, a new log and boot ID, the per-node records."""
        n = next(seq)
        if cur["swtpm"]:
            # An orderly power-off: a TPM killed without TPM2_Shutdown counts a DA
            # failure at its next start, and a few of them lock out the AK's quote.
            subprocess.run(["tpm2_shutdown", "-T",
                            f"swtpm:host=127.0.0.1,port={cur['port']}"],
                           check=True, capture_output=True)
            cur["swtpm"].kill()
            cur["swtpm"].wait()
        cur["swtpm"], cur["port"] = hosttpm.start_swtpm(tpm)
        cur["log"] = work / f"measure-{n}.log"
        bid = work / f"boot_id-{n}"
        bid.write_text(str(uuid4()) + "\n")
        r = subprocess.run([str(NODE_RECORDS), "--tcti-conf",
                            f"host=127.0.0.1,port={cur['port']}", "--log", str(cur["log"]),
                            "--state-dir", str(var), "--volume-key", key, "--uuid", uuid,
                            "--boot-id-file", str(bid)] + (["--fresh"] if fresh else []),
                           capture_output=True, text=True, timeout=scaled(60))
        if r.returncode != 0:
            raise TestFailure(f"node-records: {r.stderr}")
        return int(r.stdout.split()[1].rstrip(":"))

    def service(name, extra=()):
        port = free_port()
        logf = work / f"{name}.join.log"
        p = subprocess.Popen([str(CVM_JOIN), "--listen", f"127.0.0.1:{port}", "--key",
                              str(work / "svc.pem"), "--measurements", str(good),
                              "--ek-ca", str(ca / "issuercert.pem"), "--ek-ca",
                              str(ca / "swtpm-localca-rootca-cert.pem"), "--server",
                              "https://10.0.2.2:6443", "--cluster-ca",
                              str(work / "cluster-ca.pem"), "--token", str(work / "token"),
                              "--state", str(store), "--max-joins", "1"] + list(extra),
                             stdout=open(logf, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if "listening" in logf.read_text():
                break
            time.sleep(0.1)
        return p, port, logf

    def join(name, want_rc, extra=(), tries=1):
        svc, port, logf = service(name, extra)
        out, console = work / f"{name}.conf", work / f"{name}.console"
        r = subprocess.run([str(AGENT_HOST), "--tcti", "swtpm", "--tcti-conf",
                            f"host=127.0.0.1,port={cur['port']}", "--tsm", "none",
                            "--log", str(cur["log"]), "--firmware-log", str(work / "none"),
                            "--join", f"127.0.0.1:{port}", "--join-key", str(svc_pub),
                            "--join-out", str(out), "--join-tries", str(tries),
                            "--console", str(console)],
                           capture_output=True, text=True, timeout=scaled(120))
        svc.wait(scaled(30))
        log = logf.read_text()
        said = console.read_text() if console.exists() else ""
        if r.returncode != want_rc or out.exists() != (want_rc == 0):
            raise TestFailure(f"{name}: node exit {r.returncode} (want {want_rc}), wrote "
                              f"{out.exists()}\n{r.stderr}\n{log}")
        if "abcdef" in said or "abcdef" in r.stderr:
            raise TestFailure(f"{name}: the token reached the node's console or log")
        return log, said

    try:
        # 1. A new node: generation 1, enrolled; 2. its next boot joins at 2.
        if boot(k1, fresh=True) != 1:
            raise TestFailure("the first boot's generation is not 1")
        log, _ = join("new", 0)
        if "ENROLLED: a new node at generation 1" not in log or "JOINED" not in log:
            raise TestFailure(f"new node:\n{log}")
        node_id = re.search(r"; node ([0-9a-f]{64})", log).group(1)
        saved = work / "var-after-boot1"
        shutil.copytree(var, saved)
        if boot(k1) != 2:
            raise TestFailure("the second boot's generation is not 2")
        log, _ = join("second", 0)
        if "fresh (generation 2, last seen 1)" not in log:
            raise TestFailure(f"second boot:\n{log}")
        stored2 = (store / node_id).read_text()
        if "generation 2\n" not in stored2:
            raise TestFailure(f"the store: {stored2}")
        # 3. The state put back as boot 1 left it: generation 2 again, another boot ID.
        shutil.rmtree(var)
        shutil.copytree(saved, var)
        if boot(k1) != 2:
            raise TestFailure("the restored counter did not give 2")
        log, said = join("rollback", 3)
        want = "REFUSED: rolled back (generation 2, last seen 2)"
        if want not in log or want not in said:
            raise TestFailure(f"rollback: service said\n{log}\nnode's console: {said!r}")
        if (store / node_id).read_text() != stored2:
            raise TestFailure("a refused join changed the node's record")
        # 4. Another volume key (a swapped state volume): refused as swapped.
        boot(k2)
        log, said = join("swapped", 3)
        if "REFUSED: swapped state volume" not in log or \
                "REFUSED: swapped state volume" not in said:
            raise TestFailure(f"swapped: service said\n{log}\nnode's console: {said!r}")
        # 5. The operator re-enrols the node (by the ID the refusal named): accepted with
        # the new key, recorded; the same key then goes on as usual.
        r = subprocess.run([str(CVM_JOIN), "enrol", "--state", str(store), "--node",
                            node_id], capture_output=True, text=True)
        if r.returncode != 0 or "enrolment armed" not in r.stdout:
            raise TestFailure(f"enrol: {r.returncode} {r.stdout}{r.stderr}")
        log, _ = join("enrolled", 0)
        if "ENROLLED by the operator" not in log:
            raise TestFailure(f"enrolled:\n{log}")
        if (store / f"{node_id}.enrol").exists():
            raise TestFailure("the enrolment is still armed after the join it allowed")
        g = boot(k2)
        log, _ = join("after-enrol", 0)
        if f"fresh (generation {g}, last seen {g - 1})" not in log:
            raise TestFailure(f"after enrol:\n{log}")
        # 6. The service stops right after storing a request: the node gets nothing;
        # its retry in the same boot (same PCRs, same log) is a retry, and joins.
        g = boot(k2)
        log, _ = join("stopped", 1, extra=["--stop-after-request"])
        if "--stop-after-request" not in log or "JOINED" in log:
            raise TestFailure(f"stop after request:\n{log}")
        if f"generation {g}\n" not in (store / node_id).read_text():
            raise TestFailure("the stopped service did not store the request first")
        log, _ = join("retry", 0)
        if "a retry of the same boot" not in log or "JOINED" not in log:
            raise TestFailure(f"retry:\n{log}")
        note(f"join freshness: node {node_id[:16]}… joined at generations 1, 2, "
             f"{g - 2} (enrolled), {g - 1}, {g} (a retry after the service stopped); "
             f"rollback and swap refused")
    finally:
        if cur["swtpm"]:
            cur["swtpm"].kill()
            cur["swtpm"].wait()
