"""Remote attestation against a real node: the node image under QEMU + OVMF + a swtpm
manufactured with an EK certificate, its agent reached through a host port forwarded by
QEMU's user network; `cvm-measure attest` against the image's measurements.json. One
boot; the refusals are checked on evidence saved from it (cvm-measure attest --evidence)
or through a proxy that tampers with the live exchange."""
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time

import helpers
import hosttpm
from helpers import AGENT_HOST, free_port, wait_agent
from vm import REPO, VM, TestFailure, manufacture_tpm, note, scaled

CVM_MEASURE = REPO / "build" / "cvm-measure"
MEASUREMENTS = REPO / "build" / "image-test" / "measurements.json"
AGENT_PORT = 7741
ITEM_EK_CERT, ITEM_QUOTE, ITEM_SIGNATURE, ITEM_AK_PUBLIC = 4, 1, 2, 3
ITEM_FIRMWARE_LOG, ITEM_CVMINIT_LOG = 6, 7


def attest(*args, expect=None):
    r = subprocess.run([str(CVM_MEASURE), "attest", *map(str, args)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=scaled(120))
    if expect is not None and r.returncode != expect:
        raise TestFailure(f"cvm-measure attest {' '.join(map(str, args))}: exit "
                          f"{r.returncode}, expected {expect}:\n{r.stdout}")
    return r


def items(body):
    """The items of a response body (after the 10-byte header): [(type, bytes)]."""
    out, pos = [], 10
    while pos < len(body):
        t, n = struct.unpack(">HI", body[pos:pos + 6])
        out.append((t, body[pos + 6:pos + 6 + n]))
        pos += 6 + n
    return out


def frame(status, its):
    payload = b"".join(struct.pack(">HI", t, len(v)) + v for t, v in its)
    return b"CVMR\x01" + bytes([status]) + struct.pack(">I", len(payload)) + payload


def recv_response(s):
    buf = b""
    while len(buf) < 10 or len(buf) < 10 + struct.unpack(">I", buf[6:10])[0]:
        d = s.recv(65536)
        if not d:
            raise TestFailure(f"the agent closed after {len(buf)} bytes")
        buf += d
    return buf


def recv_request(s):
    buf = b""
    while len(buf) < 8 or len(buf) < 8 + struct.unpack(">H", buf[6:8])[0]:
        d = s.recv(65536)
        if not d:
            return buf
        buf += d
    return buf


class SwapProxy:
    """A man in the middle between the verifier and the agent that passes everything on
    but replaces the EK certificate in the evidence with another TPM's (from the same CA):
    the AK is then not in the TPM the certificate names, which only the AK binding can
    tell."""

    def __init__(self, agent_port, cert):
        self.agent_port, self.cert = agent_port, cert
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            c, _ = self.sock.accept()
            a = socket.create_connection(("127.0.0.1", self.agent_port), timeout=60)
            c.settimeout(60)
            a.sendall(recv_request(c))
            resp = recv_response(a)
            its = [(t, self.cert if t == ITEM_EK_CERT else v) for t, v in items(resp)]
            c.sendall(frame(resp[5], its))
            req = recv_request(c)
            if req:
                a.sendall(req)
                c.sendall(recv_response(a))
            c.close()
            a.close()
        except Exception as e:  # the test reports it
            self.error = e


def other_ek_cert(ca, work):
    """The EK certificate of another vTPM manufactured with the same CA."""
    state, setup = work / "other-tpm", work / "other-setup"
    state.mkdir(parents=True, exist_ok=True)
    setup.mkdir(parents=True, exist_ok=True)
    manufacture_tpm(state, ca, setup)
    out = work / "other-ek.der"
    p, port = hosttpm.start_swtpm(state)
    try:
        env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:host=127.0.0.1,port={port}")
        r = subprocess.run(["tpm2_nvread", "0x1c00002", "-o", str(out)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise TestFailure(f"tpm2_nvread of the other vTPM's EK certificate failed: "
                              f"{r.stdout}")
        return out.read_bytes()
    finally:
        p.kill()
        p.wait()


def foreign_ca(work):
    """A CA that has nothing to do with the node's vTPM."""
    key, cert = work / "foreign-ca.key", work / "foreign-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=not-the-tpm-ca"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert


def checkquote(ev, work):
    """tpm2-tools' own checker on the quote, signature and AK of the saved evidence."""
    nonce, its = ev[:32], dict(items(ev[32:]))
    ak = its[ITEM_AK_PUBLIC]
    (work / "ak.pub").write_bytes(struct.pack(">H", len(ak)) + ak)  # TPM2B_PUBLIC
    (work / "quote.msg").write_bytes(its[ITEM_QUOTE])
    (work / "quote.sig").write_bytes(its[ITEM_SIGNATURE])
    r = subprocess.run(["tpm2_checkquote", "-u", str(work / "ak.pub"), "-m",
                        str(work / "quote.msg"), "-s", str(work / "quote.sig"), "-q",
                        nonce.hex()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        raise TestFailure(f"tpm2_checkquote refused the agent's quote:\n{r.stdout}")
    bad = bytearray(nonce)
    bad[0] ^= 1
    r2 = subprocess.run(["tpm2_checkquote", "-u", str(work / "ak.pub"), "-m",
                         str(work / "quote.msg"), "-s", str(work / "quote.sig"), "-q",
                         bytes(bad).hex()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True)
    if r2.returncode == 0:
        raise TestFailure("tpm2_checkquote accepted the quote with another nonce")
    fw = work / "firmware.log"
    fw.write_bytes(its[ITEM_FIRMWARE_LOG])
    r3 = subprocess.run(["tpm2_eventlog", str(fw)], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
    if r3.returncode != 0 or "pcrs:" not in r3.stdout:
        raise TestFailure(f"tpm2_eventlog could not replay the firmware log:\n{r3.stdout[-2000:]}")
    return r3.stdout


def quoted_pcr(ev, pcr, alg=0x000b):
    for t, v in items(ev[32:]):
        if t == 5 and struct.unpack(">H", v[:2])[0] == alg:
            size = (len(v) - 2) // 16
            return v[2 + pcr * size:2 + (pcr + 1) * size].hex()
    raise TestFailure("no sha256 PCR values in the evidence")


def check_saved(ev, work, cas):
    """The refusals, on evidence saved from a boot."""
    data = ev.read_bytes()
    # The same evidence for another nonce.
    r = attest("--evidence", ev, "--nonce", "00" * 32, "--measurements", MEASUREMENTS, *cas,
               expect=3)
    if "not this verifier's nonce" not in r.stdout:
        raise TestFailure(f"replayed evidence not refused for its nonce:\n{r.stdout}")
    # Saved evidence with its own nonce passes, saying the binding is not checked.
    r = attest("--evidence", ev, "--measurements", MEASUREMENTS, *cas, expect=0)
    if "AK binding: not checked" not in r.stdout:
        raise TestFailure(f"saved evidence: {r.stdout}")
    # An EK CA not given.
    r = attest("--evidence", ev, "--measurements", MEASUREMENTS, "--ek-ca", foreign_ca(work),
               expect=3)
    if "EK certificate: REFUSED" not in r.stdout:
        raise TestFailure(f"a foreign EK CA: {r.stdout}")
    # One cvminit log record whose text changed (its digests kept).
    m = re.search(rb'"data":"roothash=[0-9a-f]{64} console=ttyS0', data)
    if not m:
        raise TestFailure("the saved evidence has no cvminit:cmdline content")
    bad = bytearray(data)
    bad[m.end() - 1] = ord("1")
    (work / "bad-content.bin").write_bytes(bad)
    r = attest("--evidence", work / "bad-content.bin", "--measurements", MEASUREMENTS, *cas,
               expect=3)
    if not re.search(r'cvminit log record 1 \(byte offset \d+\): "cvminit:cmdline": its '
                     r'content is not what was measured', r.stdout):
        raise TestFailure(f"a changed record content not named:\n{r.stdout}")
    # One cvminit log record whose digest changed.
    m = re.search(rb'"cvminit:root"', data)
    start = data.rfind(b'"digest":"', 0, m.start()) + len(b'"digest":"')
    bad = bytearray(data)
    bad[start] = ord("0") if bad[start] != ord("0") else ord("1")
    (work / "bad-digest.bin").write_bytes(bad)
    r = attest("--evidence", work / "bad-digest.bin", "--measurements", MEASUREMENTS, *cas,
               expect=3)
    # (Each bank is replayed: the changed one no longer gives the quoted PCR 15; the record
    # is named by its content check.)
    if not re.search(r'PCR 15 sha512: the logs do not replay to the quoted value', r.stdout) \
            or not re.search(r'cvminit log record 3 \(byte offset \d+\): "cvminit:root": its '
                             r'content is not what was measured: its sha512 digest', r.stdout):
        raise TestFailure(f"a changed record digest not named:\n{r.stdout}")
    note("refused: another nonce, a foreign EK CA, a changed record content, a changed "
         "record digest (each named)")
    # Interop: tpm2-tools checks the same quote and replays the firmware log.
    out = checkquote(data, work)
    m = re.search(r"sha256:\n(?:.*\n)*?\s+4\s*:\s*0x([0-9A-Fa-f]{64})", out)
    if not m or m.group(1).lower() != quoted_pcr(data, 4):
        raise TestFailure(f"tpm2_eventlog's PCR 4 is not the quoted one ({quoted_pcr(data, 4)})"
                          f":\n{out[-1500:]}")
    note("tpm2_checkquote verifies the agent's quote (and refuses another nonce); "
         "tpm2_eventlog replays its firmware log to the quoted PCR 4")


def test_attest_node():
    if not MEASUREMENTS.is_file():
        raise TestFailure(f"{MEASUREMENTS} is missing: 'make test-image' writes it")
    disk = helpers.node_disk("attest")
    work = disk.parent
    ca = work / "ek-ca"
    port = free_port()
    cas = ["--ek-ca", ca / "issuercert.pem", "--ek-ca", ca / "swtpm-localca-rootca-cert.pem"]
    ev = work / "evidence.bin"
    v = VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
           name="attest_boot", memory=2048, timeout=scaled(900),
           nic={"hostfwd": f"tcp:127.0.0.1:{port}-:{AGENT_PORT}"}, ek_ca=ca,
           join=helpers.default_join("attest_boot"))
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: attest: started", scaled(helpers.NODE_STEP), since=0)
        # PCR 11 in measurements.json is the value after "ready".
        v.wait_for(r"cvminit: measure: ready: PCR 11 sha256", scaled(helpers.NODE_STEP), since=0)
        waited = wait_agent(port, scaled(120))
        note(f"the agent answered {waited:.1f} s after ready")
        t0 = time.monotonic()
        r = attest(f"127.0.0.1:{port}", "--measurements", MEASUREMENTS, *cas,
                   "--save-evidence", ev, expect=0)
        took = time.monotonic() - t0
        if "ATTESTED" not in r.stdout or "AK binding: ok" not in r.stdout:
            raise TestFailure(f"attest passed without saying so:\n{r.stdout}")
        note(f"attest: ATTESTED in {took:.1f} s ({ev.stat().st_size} bytes of evidence)")
        note("  " + "\n  ".join(r.stdout.strip().splitlines()))
        j = json.loads(attest(f"127.0.0.1:{port}", "--measurements", MEASUREMENTS, *cas,
                              "--json", expect=0).stdout)
        if j["verdict"] != "attested" or not any(f["kind"] == "pin" for f in j["findings"]):
            raise TestFailure(f"--json: {j}")

        # The node under a flood through the forwarded port: a valid exchange during it is
        # answered within seconds, the agent is not restarted, cvminit goes on.
        result = {}
        th = threading.Thread(target=lambda: result.update(flood(port)))
        th.start()
        time.sleep(0.5)
        t1 = time.monotonic()
        r = attest(f"127.0.0.1:{port}", "--measurements", MEASUREMENTS, *cas, expect=0)
        valid_s = time.monotonic() - t1
        overlapped = th.is_alive()
        th.join(scaled(120))
        if not overlapped or result.get("conn") != 1000 or result.get("bad") != 1000:
            raise TestFailure(f"the flood did not run around the request: {result}")
        if valid_s > scaled(10):
            raise TestFailure(f"a valid attest took {valid_s:.1f} s during the flood")
        v.assert_absent(r"cvminit: attest: (exited|killed|restart)", "the agent went down")
        if len(v.console.find(r"cvminit: attest: started")) != 1:
            raise TestFailure("the agent was started more than once")
        v.assert_absent(r"REFUSING|fail_closed|panic", "cvminit was disturbed by the flood")
        note(f"flood through QEMU's port forward: 1000 idle connections and 1000 malformed "
             f"requests; a valid attest during it: ATTESTED in {valid_s:.1f} s; the agent "
             f"kept running")

        # An AK that is not in the certified TPM: another vTPM's EK certificate (same CA).
        proxy = SwapProxy(port, other_ek_cert(ca, work))
        r = attest(f"127.0.0.1:{proxy.port}", "--measurements", MEASUREMENTS, *cas, expect=3)
        proxy.thread.join(30)
        if proxy.error or "AK binding: REFUSED" not in r.stdout \
                or "EK certificate: ok" not in r.stdout:
            raise TestFailure(f"AK/EK swap not refused by the binding ({proxy.error}):\n"
                              f"{r.stdout}")
        note("another TPM's EK certificate in the evidence: refused by the AK binding")
        helpers.power_off_via_button(v)

    check_saved(ev, work, cas)




def rss_kib(pid):
    status = open(f"/proc/{pid}/status").read()
    return (int(re.search(r"VmRSS:\s+(\d+)", status).group(1)),
            int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))


def flood(port, n_conn=1000, n_bad=1000, seconds=60):
    """n_conn connections that send nothing (held 100 at a time) and n_bad malformed
    requests, from loopback, spread over at most `seconds`. Returns the counts done; a
    malformed request counts when the agent answered it with status 1 (bad request) and
    closed the connection."""
    done = {"conn": 0, "bad": 0}
    end = time.monotonic() + seconds
    held = []
    junk = [b"GET / HTTP/1.0\r\n\r\n", b"CVMQ\x02", b"CVMQ\x01\x01\x00\x21" + b"x" * 33,
            b"CVMQ\x01\x02\xff\xff", b"\x00" * 64]
    while (done["conn"] < n_conn or done["bad"] < n_bad) and time.monotonic() < end:
        if done["conn"] < n_conn:
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                done["conn"] += 1
            except OSError:
                pass
            if len(held) >= 100:
                for s in held:
                    s.close()
                held = []
        if done["bad"] < n_bad:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(junk[done["bad"] % len(junk)])
                answer = b""
                while True:  # the refusal, then the agent closes
                    d = s.recv(64)
                    if not d:
                        break
                    answer += d
                s.close()
                if answer[:6] == b"CVMR\x01\x01":
                    done["bad"] += 1
                else:
                    done.setdefault("unexpected", []).append(answer[:16])
            except OSError:
                pass
        time.sleep(0.01)  # paced: the whole flood takes 10-20 s, within the minute
    for s in held:
        s.close()
    return done


def test_attest_agent_flood_host():
    """The agent (the host build, without sanitizers) on a swtpm with an EK certificate,
    under 1,000 idle connections and 1,000 malformed requests from loopback: a valid
    exchange made during the flood completes within seconds, and its memory stays
    bounded."""
    if not AGENT_HOST.is_file():
        raise TestFailure(f"{AGENT_HOST} is missing: make {AGENT_HOST.relative_to(REPO)}")
    work = REPO / "build" / "test-work" / "attest_flood"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    # hosttpm.start_swtpm: a port pair both free, and swtpm answering before the agent
    # opens it (a loaded host took longer than a fixed wait).
    swtpm, tport, ca = hosttpm.ek_swtpm(work)
    aport = free_port()
    agent = None
    try:
        agent = subprocess.Popen([str(AGENT_HOST), "--port", str(aport), "--tcti", "swtpm",
                                  "--tcti-conf", f"host=127.0.0.1,port={tport}",
                                  "--tsm", "none", "--log", str(work / "none"),
                                  "--firmware-log", str(work / "none")],
                                 stdout=subprocess.DEVNULL,
                                 stderr=open(work / "agent.log", "w"))
        wait_agent(aport, scaled(30))
        cas = ["--ek-ca", ca / "issuercert.pem", "--ek-ca", ca / "swtpm-localca-rootca-cert.pem"]
        m = work / "m.json"
        m.write_text('{"4": {"expected": "' + "00" * 32 + '", "warnOnly": false}}\n')
        before = rss_kib(agent.pid)
        result = {}
        th = threading.Thread(target=lambda: result.update(flood(aport)))
        t0 = time.monotonic()
        th.start()
        time.sleep(0.3)
        # During the flood: a valid exchange (PCR 4 of a fresh swtpm is zeros: attested).
        t1 = time.monotonic()
        r = attest(f"127.0.0.1:{aport}", "--measurements", m, *cas, "--timeout", "20")
        valid_s = time.monotonic() - t1
        overlapped = th.is_alive()
        th.join(120)
        flood_s = time.monotonic() - t0
        after = rss_kib(agent.pid)
        if r.returncode != 0 or "AK binding: ok" not in r.stdout:
            raise TestFailure(f"a valid request during the flood: exit {r.returncode}\n{r.stdout}")
        if result.get("conn") != 1000 or result.get("bad") != 1000:
            raise TestFailure(f"the flood did not run: {result}")
        if not overlapped:
            raise TestFailure("the flood ended before the valid request did: no overlap")
        if valid_s > scaled(10):
            raise TestFailure(f"the valid request took {valid_s:.1f} s during the flood")
        if after[1] > before[1] + 8 * 1024:
            raise TestFailure(f"agent memory grew from {before} to {after} KiB (RSS, HWM)")
        if agent.poll() is not None:
            raise TestFailure("the agent died under the flood")
        note(f"flood: 1000 idle connections + 1000 malformed requests in {flood_s:.1f} s; a "
             f"valid attest during it took {valid_s:.2f} s; agent RSS {before[0]} -> "
             f"{after[0]} KiB, peak {after[1]} KiB")
    finally:
        if agent:
            agent.terminate()
            agent.wait()
        swtpm.kill()
        swtpm.wait()


def test_attest_cmdline_word_refused():
    """The node image's UKI with one more command-line word and its references rewritten
    to match (a consistent image the node boots), attested against the original image's
    measurements.json: refused naming PCRs 4, 11 and 15, and the PCR 15 record shows the
    command line with the word."""
    if not MEASUREMENTS.is_file():
        raise TestFailure(f"{MEASUREMENTS} is missing: 'make test-image' writes it")
    word = "mitigations=auto"
    disk = helpers.node_disk("attest_word")
    helpers.add_to_uki_cmdline(disk, word, keep_references=False)
    work = disk.parent
    ca = work / "ek-ca"
    port = free_port()
    cas = ["--ek-ca", ca / "issuercert.pem", "--ek-ca", ca / "swtpm-localca-rootca-cert.pem"]
    svc = helpers.JoinService("attest_word")  # the original image's measurements
    v = VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
           name="attest_word", memory=2048, timeout=scaled(900),
           nic={"hostfwd": f"tcp:127.0.0.1:{port}-:{AGENT_PORT}"}, ek_ca=ca, join=svc)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: attest: started", scaled(helpers.NODE_STEP), since=0)
        # The join service refuses this image too (test_join.py), so the node never
        # reaches `ready`: its PCR 11 differs from measurements.json's either way.
        v.wait_for(r"join: REFUSED by the join service", scaled(helpers.NODE_STEP), since=0)
        wait_agent(port, scaled(120))
        r = attest(f"127.0.0.1:{port}", "--measurements", MEASUREMENTS, *cas, expect=1)
        helpers.power_off_via_button(v)
    for want in ("EK certificate: ok", "AK binding: ok", "logs: ok", "PCR 4 sha256: MISMATCH",
                 "PCR 11 sha256: MISMATCH"):
        if want not in r.stdout:
            raise TestFailure(f"no {want!r} in:\n{r.stdout}")
    m = re.search(r'PCR 15 record 0: expected "cvminit:cmdline" with content "([^"]*)"; the '
                  r'node measured "cvminit:cmdline" with content "([^"]*)"', r.stdout)
    if not m or word in m.group(1) or not m.group(2).endswith(" " + word):
        raise TestFailure(f"PCR 15's command line difference not shown with {word!r}:\n"
                          f"{r.stdout}")
    note("one more command-line word: refused naming PCR 4, 11 and 15; the node measured "
         f"\"{m.group(2)}\"")
