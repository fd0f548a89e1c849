"""The join (docs/attestation.md, "Join"). On the host: cvminit-agent --join (the host build)
on a swtpm with an EK certificate, cvm-join on loopback; a node whose PCRs match gets its
bootstrap kubeconfig; one PCR altered, or a service that cannot prove the pinned key, and
it gets nothing. In QEMU: the node test image, whose config has the join service and
kubelet after it, joins a cvm-join on the host's loopback (helpers.JoinService, reached
through guestfwd) and the kubelet stand-in uses what it got against a stand-in API server
(helpers.ApiServer); a service with another key is refused before any evidence and the
node joins on a later try once the right one listens; an image with another command line
is refused and never starts kubelet. Freshness (cvm-join --state) on host processes and
in QEMU: one disk and vTPM over five boots, its state partition put back (rolled back),
blanked (swapped) and re-enrolled, the service stopped after a request, a power cut."""
import base64
import hashlib
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from uuid import uuid4

import helpers
import hosttpm
from helpers import AGENT_HOST, CVM_JOIN, free_port, wait_agent
from vm import REPO, TestFailure, manufacture_tpm, note, scaled


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
    svc_pub = _key(work / "svc.pem")
    other_pub = _key(work / "other.pem")
    (work / "cluster-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                         "-----END CERTIFICATE-----\n")
    (work / "token").write_text("abcdef.0123456789abcdef\n")
    good, bad = work / "good.json", work / "bad.json"
    good.write_text('{"4": {"expected": "' + "00" * 32 + '", "warnOnly": false}}\n')
    bad.write_text('{"4": {"expected": "' + "11" * 32 + '", "warnOnly": false}}\n')
    swtpm, tport, ca = hosttpm.ek_swtpm(work)  # a free port pair, answering

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
    tpm.mkdir()
    manufacture_tpm(tpm, ca, work)
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


KUBELET_STARTED = r"cvminit: kubelet: started \(pid \d+\)"
JOIN_READY = r"cvminit: join: ready \(socket /run/cvminit/join.sock"
STEP = 300


def test_join_node():
    """One boot of the node test image. First cvm-join holds another key: the node says
    on its console that the service did not prove the pinned key, cvm-join's log shows no
    evidence request answered, kubelet is not started. Then the right service comes up on
    the same port: the same boot joins on cvminit's retry (JOINED, ATTESTED in its log),
    the join service becomes ready and only then kubelet starts; the stand-in reads the
    bootstrap kubeconfig (server, CA, token) and its HTTPS request reaches the stand-in API
    server, verified with the cluster CA, with the bearer token the service handed out;
    the token is on neither the console nor the test channel."""
    disk = helpers.node_disk("join_node")
    work = disk.parent
    other = work / "other.pem"
    _key(other)
    api = helpers.ApiServer()
    svc = helpers.JoinService("join_node", key=other)
    try:
        v = helpers.node_vm("join_node", disk, join=svc, nic={"guestfwd": api.guestfwd()})
        with v:
            helpers.expect_start(v, "OVMF+UKI")
            v.wait_for(r"join: REFUSED the join service: it did not prove the pinned key",
                       scaled(STEP), since=0)
            refused_at = v.last_match_time
            svc.wait_log(r"cvm-join: \S+: REFUSED", scaled(30))
            log = svc.log()
            if "nonce" in log or "JOINED" in log or "ATTESTED" in log:
                raise TestFailure(f"the node answered a service with another key:\n{log}")
            v.assert_absent(KUBELET_STARTED, "kubelet started while the join was refused")
            # The right service on the same port; cvminit restarts the join service.
            svc.restart(key=helpers.DEV_JOIN_KEY)
            t_restart = time.monotonic()
            v.wait_for(JOIN_READY, scaled(STEP), since=0)
            ready_at = v.last_match_time
            svc.wait_log(r"JOINED", scaled(30))
            joined_after = time.monotonic() - t_restart
            v.wait_for(KUBELET_STARTED, scaled(STEP), since=0)
            if v.index_of(JOIN_READY) > v.index_of(KUBELET_STARTED):
                raise TestFailure("kubelet started before the join service was ready")
            if v.index_of(r"join: REFUSED the join service") > v.index_of(KUBELET_STARTED):
                raise TestFailure("kubelet started before the refusal")
            m = v.chan.wait_for(helpers.STANDIN + r"bootstrap: /etc/kubernetes/bootstrap-"
                                r"kubelet.conf: server (\S+), cluster CA (\d+) bytes, token "
                                r"(\d+) characters$", scaled(STEP), since=0)
            ca_len = len(helpers.cluster_ca()["ca"].read_bytes())
            if (m.group(1) != svc.server or int(m.group(2)) != ca_len
                    or int(m.group(3)) != len(svc.token)):
                raise TestFailure(f"the stand-in read {m.group(0)!r}; the service sent "
                                  f"{svc.server}, a CA of {ca_len} bytes, a token of "
                                  f"{len(svc.token)}")
            v.chan.wait_for(helpers.STANDIN + r"api: TLS to \S+, certificate verified with "
                            r"the cluster CA$", scaled(STEP), since=0)
            v.chan.wait_for(helpers.STANDIN + r'api: answer "HTTP/1.1 200 OK" body '
                            r'"cvminit-test-apiserver: hello kubelet"$', scaled(STEP), since=0)
            if f"Bearer {svc.token}" not in api.tokens:
                raise TestFailure(f"the API server got {api.tokens} for token {svc.token}")
            for stream in (v.console, v.chan):
                stream.assert_absent(re.escape(svc.token), "the bootstrap token leaked")
            log = svc.log()
            for want in ("AK binding: ok", "ATTESTED", "JOINED"):
                if want not in log:
                    raise TestFailure(f"cvm-join's log lacks {want!r}:\n{log}")
            helpers.power_off_via_button(v)
        note(f"refused the service with another key at {refused_at:.1f} s; joined "
             f"{joined_after:.1f} s after the right service started (cvminit's backoff "
             f"included); join ready at {ready_at:.1f} s")
        note(f"EK manufacturing (swtpm_setup --create-ek-cert): "
             f"{getattr(v, 'manufacture_seconds', 0):.2f} s")
        note(f"the API server saw: {api.requests}")
    finally:
        api.close()


def test_join_cmdline_refused():
    """The test image with one word added to its UKI's command line and its references
    rewritten to match (a consistent image, so cvminit boots it), against a cvm-join
    holding the original image's measurements: the join is refused (PCR 11 and 4 named in
    cvm-join's log), the node says so on its console, and kubelet is never started."""
    word = "mitigations=auto"
    disk = helpers.node_disk("join_cmdline")
    helpers.add_to_uki_cmdline(disk, word, keep_references=False)
    svc = helpers.JoinService("join_cmdline")
    v = helpers.node_vm("join_cmdline", disk, join=svc)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"join: REFUSED by the join service: attestation refused \(cvm-measure "
                   r"attest exit status 1\); kubelet is not started", scaled(STEP), since=0)
        svc.wait_log(r"REFUSED: attestation refused", scaled(30))
        # cvminit retries the join with its backoff: a second refusal, still no kubelet.
        v.wait_for(r"join: REFUSED by the join service", scaled(STEP))
        v.assert_absent(KUBELET_STARTED, "kubelet started on a refused node")
        v.chan.assert_absent(r"kubelet-standin: ", "the stand-in ran on a refused node")
        helpers.power_off_via_button(v)
    log = svc.log()
    for want in ("PCR 4 sha256: MISMATCH", "PCR 11 sha256: MISMATCH"):
        if want not in log:
            raise TestFailure(f"cvm-join's log lacks {want!r}:\n{log[-3000:]}")
    if "JOINED" in log:
        raise TestFailure(f"cvm-join sent the bundle to the changed image:\n{log}")
    note(f"an image with {word!r} added: refused by cvm-join ("
         f"{log.count('REFUSED: attestation refused')} attempts), kubelet never started")


def _save_state(disk, out):
    """The state partition of disk as a sparse file (what the host can copy at will)."""
    base, size = helpers.state_part(disk)
    subprocess.run(["dd", f"if={disk}", f"of={out}", "bs=1M", f"skip={base}",
                    f"count={size}", "iflag=skip_bytes,count_bytes", "conv=sparse",
                    "status=none"], check=True)
    return out


def _put_state(disk, src):
    """Writes src over disk's state partition, or zeroes (a blank partition) when src
    is None: the hole punched first, so that what dd's conv=sparse skips reads as
    zero. Checked by reading the partition back."""
    base, size = helpers.state_part(disk)
    subprocess.run(["fallocate", "--punch-hole", "--offset", str(base), "--length",
                    str(size), str(disk)], check=True)
    if src is not None:
        subprocess.run(["dd", f"if={src}", f"of={disk}", "bs=1M", f"seek={base}",
                        "oflag=seek_bytes", "conv=sparse,notrunc", "status=none"],
                       check=True)
    want, got = hashlib.sha256(), hashlib.sha256()
    with open(disk, "rb") as d, open(src or "/dev/zero", "rb") as w:
        d.seek(base)
        for off in range(0, size, 1 << 20):
            n = min(1 << 20, size - off)
            got.update(d.read(n))
            want.update(w.read(n))
    if got.digest() != want.digest():
        raise TestFailure(f"{disk}: the state partition is not what was written")


GENERATION = r"cvminit: state: generation (\d+) measured into PCR 15"
NODE_REFUSED = (r"cvminit-agent: join: REFUSED by the join service: REFUSED: {}; node {}; "
                r"kubelet is not started")


def test_join_freshness_node():
    """Freshness in QEMU: five boots of one node test image disk and one vTPM (kept
    across boots as a cloud keeps it) against cvm-join --state on one store.
    1. A new disk: generation 1; the first service stops right after it stored the
       request (--stop-after-request, ENROLLED: a new node at generation 1); a service
       without the flag on the same port gets the node's retry in the same boot: a retry
       of the same boot, JOINED, kubelet after that. Powered off; the state partition
       saved (S1).
    2. Generation 2, fresh (last seen 1), joined; the power cut (QMP quit) as soon as
       the kubelet stand-in read its bootstrap kubeconfig (on the test channel): no
       orderly shutdown. The state partition saved (S2).
    3. S1 written back: the node measures 2 again, with a new boot ID: REFUSED rolled
       back (generation 2, last seen 2) in the service's log and on the node's console,
       the record unchanged, refused again on cvminit's retry, kubelet never started.
    4. S2 written back (the latest disk, after its power cut): generation 3, fresh (last
       seen 2), joins: neither the power cut nor the rollback attempt locked it out.
    5. A blank state partition (a swapped state: the node makes a new volume, a new
       volume key, generation 1): REFUSED swapped state volume with the node's ID; the
       operator's `cvm-join enrol --state DIR --node ID`; cvminit's next start of the
       join service in the same boot: ENROLLED by the operator, JOINED, kubelet."""
    disk = helpers.node_disk("join_fresh")
    work = disk.parent
    store, tpm = work / "store", work / "tpm"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    s1, s2 = work / "state-s1.img", work / "state-s2.img"
    state = ["--state", str(store)]
    took = []

    def vm_for(n, svc, tpm_from):
        t0 = time.monotonic()
        return helpers.node_vm(f"join_fresh_{n}", disk, tpm_from=tpm_from, join=svc), t0

    def generation(v):
        return int(v.wait_for(GENERATION, scaled(STEP), since=0).group(1))

    def verdict(svc, text):
        """The service's verdict line for this node; an accepted join's boot ID."""
        if text.startswith("REFUSED"):  # a refusal's line ends with the node's ID
            return svc.wait_log(rf"^cvm-join: \S+: {text}; node {node_id}$", scaled(STEP))
        m = svc.wait_log(rf"^cvm-join: \S+: {text}; node {node_id} \(boot ID "
                         r"([0-9a-f-]{36})\)$", scaled(STEP))
        return m.group(1)

    def joined(v, svc):
        svc.wait_log(r"JOINED", scaled(STEP))
        v.wait_for(JOIN_READY, scaled(STEP), since=0)
        v.wait_for(KUBELET_STARTED, scaled(STEP), since=0)
        if v.index_of(JOIN_READY) > v.index_of(KUBELET_STARTED):
            raise TestFailure("kubelet started before the join service was ready")
        v.chan.wait_for(helpers.STANDIN + r"bootstrap: /etc/kubernetes/bootstrap-kubelet."
                        rf"conf: server {re.escape(svc.server)}, ", scaled(STEP), since=0)

    def record():
        return (store / node_id).read_text()

    # 1. A new node; the service stops after storing its request, the retry joins.
    node_id = r"([0-9a-f]{64})"
    svc = helpers.default_join("join_fresh_1", extra=state + ["--stop-after-request"])
    v, t0 = vm_for(1, svc, None)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        if generation(v) != 1:
            raise TestFailure("a new state volume's first generation is not 1")
        m = svc.wait_log(r"^cvm-join: \S+: ENROLLED: a new node at generation 1; node "
                         r"([0-9a-f]{64}) \(boot ID ([0-9a-f-]{36})\)$", scaled(STEP))
        node_id, boot1 = m.group(1), m.group(2)
        svc.wait_log(r"^cvm-join: stopping after a stored request, before answering it",
                     scaled(30))
        if svc.proc.wait(scaled(10)) != 0 or "JOINED" in svc.log():
            raise TestFailure(f"--stop-after-request: exit {svc.proc.returncode}\n"
                              f"{svc.log()}")
        if f"generation 1\nboot_id {boot1}\n" not in record():
            raise TestFailure(f"the stopped service did not store the request:\n{record()}")
        v.assert_absent(KUBELET_STARTED, "kubelet started with no bundle sent")
        svc.restart(extra=state)  # the same port: the node's agent retries
        if verdict(svc, r"a retry of the same boot \(generation 1, boot ID "
                   rf"{boot1}\)") != boot1:
            raise TestFailure("the retry's boot ID differs from the stored request's")
        joined(v, svc)
        helpers.power_off_via_button(v)
    took.append(time.monotonic() - t0)
    helpers.keep_tpm(v, tpm)
    _save_state(disk, s1)

    # 2. Fresh at 2, joined; power cut as soon as the stand-in read the bundle.
    svc = helpers.default_join("join_fresh_2", extra=state)
    v, t0 = vm_for(2, svc, tpm)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        if generation(v) != 2:
            raise TestFailure("the second boot's generation is not 2")
        boot2 = verdict(svc, r"fresh \(generation 2, last seen 1\)")
        joined(v, svc)
        v.qmp("quit")
        v.wait_exit(scaled(30))
        if v.shutdown_reason() != "host-qmp-quit" or v.find(r"cvminit: shutdown: "):
            raise TestFailure(f"not a power cut: {v.shutdown_reason()}")
    took.append(time.monotonic() - t0)
    helpers.keep_tpm(v, tpm)
    rec2 = record()
    if f"generation 2\nboot_id {boot2}\n" not in rec2:
        raise TestFailure(f"the store after boot 2:\n{rec2}")
    _save_state(disk, s2)

    # 3. S1 back: rolled back, refused on every try, no kubelet.
    _put_state(disk, s1)
    svc = helpers.default_join("join_fresh_3", extra=state)
    v, t0 = vm_for(3, svc, tpm)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        if generation(v) != 2:
            raise TestFailure("the restored volume's counter did not give 2")
        why = r"rolled back \(generation 2, last seen 2\)"
        verdict(svc, "REFUSED: " + why)
        v.wait_for(NODE_REFUSED.format(why, node_id), scaled(STEP), since=0)
        # cvminit restarts the join service: refused again, still no kubelet.
        v.wait_for(NODE_REFUSED.format(why, node_id), scaled(STEP))
        v.assert_absent(KUBELET_STARTED, "kubelet started on a rolled-back node")
        v.chan.assert_absent(r"kubelet-standin: ", "the stand-in ran on a rolled-back node")
        if "JOINED" in svc.log():
            raise TestFailure(f"cvm-join sent the bundle to a rolled-back node:\n{svc.log()}")
        helpers.power_off_via_button(v)
    took.append(time.monotonic() - t0)
    helpers.keep_tpm(v, tpm)
    if record() != rec2:
        raise TestFailure(f"a refused join changed the record:\n{record()}")

    # 4. S2 (the latest state, after its power cut) back: it joins again.
    _put_state(disk, s2)
    svc = helpers.default_join("join_fresh_4", extra=state)
    v, t0 = vm_for(4, svc, tpm)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        if generation(v) != 3:
            raise TestFailure("the latest state's next generation is not 3")
        verdict(svc, r"fresh \(generation 3, last seen 2\)")
        joined(v, svc)
        v.assert_absent(helpers.IO_ERRORS, "the state volume after the power cut")
        helpers.power_off_via_button(v)
    took.append(time.monotonic() - t0)
    helpers.keep_tpm(v, tpm)
    key3 = re.search(r"^volume_key (\S+)$", record(), re.M).group(1)

    # 5. A blank state partition: a new volume, swapped; enrolled by the operator.
    _put_state(disk, None)
    svc = helpers.default_join("join_fresh_5", extra=state)
    v, t0 = vm_for(5, svc, tpm)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(helpers.MADE, scaled(STEP), since=0)
        if generation(v) != 1:
            raise TestFailure("the new volume's generation is not 1")
        why = r"swapped state volume \(another volume key than at generation 3\)"
        verdict(svc, "REFUSED: " + why)
        m = v.wait_for(NODE_REFUSED.format(why, "([0-9a-f]{64})"), scaled(STEP), since=0)
        if m.group(1) != node_id:
            raise TestFailure(f"the console names node {m.group(1)}, not {node_id}")
        # The operator enrols the node by the ID its console printed.
        r = subprocess.run([str(CVM_JOIN), "enrol", "--state", str(store), "--node",
                            m.group(1)], capture_output=True, text=True)
        if r.returncode != 0 or "enrolment armed" not in r.stdout:
            raise TestFailure(f"enrol: exit {r.returncode}: {r.stdout}{r.stderr}")
        verdict(svc, r"ENROLLED by the operator \(generation 1\)")
        joined(v, svc)
        helpers.power_off_via_button(v)
    took.append(time.monotonic() - t0)
    rec5 = record()
    if "generation 1\n" not in rec5 or f"volume_key {key3}\n" in rec5:
        raise TestFailure(f"the store after the enrolment:\n{rec5}")
    if (store / f"{node_id}.enrol").exists():
        raise TestFailure("the enrolment is still armed after the join it allowed")
    note(f"join freshness in QEMU: node {node_id[:16]}…: enrolled at 1 (a same-boot retry "
         f"after --stop-after-request), fresh at 2 then a power cut, rolled back refused, "
         f"fresh at 3, swapped refused then enrolled at 1; 5 boots, "
         f"{' + '.join(f'{t:.0f}' for t in took)} = {sum(took):.0f} s")
