"""systemd's own `systemd-tpm2` token plugin against a node's state header. trixie's
libcryptsetup-token-systemd-tpm2.so (systemd 257, the version of the tools tree) runs with
the tools tree's cryptsetup, chrooted into an overlay of that tree in a private mount
namespace (bookworm's glibc cannot load it), against the node's swtpm with PCRs replayed to
the sealed values: `cryptsetup open --token-only --test-passphrase`.

It fails on the header cvminit made. Copies of it with the two differences docs/state.md
names ("systemd-tpm2 compatibility") fixed on the host show they are the reason: the same
key resealed under systemd's legacy primary (cvminit's SRK template without noDA), and the
keyslot's passphrase changed to base64 of the key. With both the plugin opens the keyslot;
with either alone it does not.

The plugin comes from Debian's archive (`apt-get download systemd-cryptsetup=<the tools
tree's systemd version>` with a private trixie source list) into build/, once."""
import base64
import glob
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import tty

import hosttpm
import helpers
from vm import REPO, Skip, TestFailure, note

BUILD = REPO / "build" / "systemd-token"
LEGACY_ATTRS = "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"
PLUGIN_DIR = "usr/lib/x86_64-linux-gnu/cryptsetup"


def tools_tree():
    r = subprocess.run([str(REPO / "image/tools-tree.sh"), "--path"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    tree = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
    if not tree or not os.path.isfile(os.path.join(tree, "usr/sbin/cryptsetup")):
        raise TestFailure(f"no trixie tools tree with cryptsetup ({tree or r.stderr.strip()}):"
                          " run make image first")
    return tree


def package_version(tree, name):
    with open(os.path.join(tree, "var/lib/dpkg/status")) as f:
        m = re.search(rf"^Package: {re.escape(name)}\n(?:.+\n)*?Version: (\S+)", f.read(), re.M)
    if not m:
        raise TestFailure(f"the tools tree has no {name} package")
    return m.group(1)


def plugin(tree):
    """The directory holding the plugin of the tree's systemd version (downloaded once)."""
    version = package_version(tree, "systemd")
    d = BUILD / version
    so = d / PLUGIN_DIR / "libcryptsetup-token-systemd-tpm2.so"
    if so.is_file():
        return so.parent
    apt = BUILD / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        "".join(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                f"http://deb.debian.org/{repo} {suite} main\n"
                for repo, suite in (("debian", "trixie"), ("debian", "trixie-updates"),
                                    ("debian-security", "trixie-security"))))
    (apt / "status").touch()
    opts = [f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache={apt / 'cache'}",
            f"-oDir::Etc::SourceList={apt / 'sources.list'}",
            "-oDir::Etc::SourceParts=/nonexistent", "-oAPT::Architecture=amd64",
            f"-oDir::State::status={apt / 'status'}", "-oAPT::Sandbox::User=root"]
    for args in (["update"], ["download", f"systemd-cryptsetup={version}"]):
        r = subprocess.run(["apt-get", *opts, *args], cwd=apt / "debs", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0 and args == ["update"] and re.search(r"^(W|E): ", r.stdout, re.M):
            r.returncode = 1  # apt-get update exits 0 when it could not fetch an index
        if r.returncode != 0 and args == ["update"]:
            raise Skip(f"Debian's archive is not reachable for trixie's plugin: "
                       f"{r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ''}")
        if r.returncode != 0:
            raise TestFailure(f"apt-get {' '.join(args)} (Debian trixie): {r.stdout[-2000:]}")
    deb = glob.glob(str(apt / "debs" / f"systemd-cryptsetup_*.deb"))
    if len(deb) != 1:
        raise TestFailure(f"expected one systemd-cryptsetup .deb, got {deb}")
    shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", deb[0], str(d)], check=True)
    if not so.is_file():
        raise TestFailure(f"{deb[0]} has no {PLUGIN_DIR}/libcryptsetup-token-systemd-tpm2.so")
    return so.parent


# Runs argv chrooted into an overlay of the tools tree (writes go to a scratch upper
# directory) with the plugin in cryptsetup's token directory, share/ as /tmp, and a /dev of
# its own whose tpmrm0 is the pty $TTY; all in a private mount namespace, so the cached
# tree and the host see nothing of it. systemd's plugin finds its TPM only as
# /sys/class/tpmrm/<name> → /dev/<name> (tpm2_find_device_auto(); SYSTEMD_TPM2_DEVICE is
# not consulted on that path), and this host has neither a TPM nor the vtpm proxy or CUSE
# to give swtpm a device node: hence the pty, bridged to swtpm by Bridge below.
CHROOT = r"""
set -e
T=$1; P=$2; O=$3; TTY=$4; shift 4
mkdir -p $O/upper $O/work $O/root $O/share
mount -t overlay overlay -o lowerdir=$T,upperdir=$O/upper,workdir=$O/work $O/root
mkdir -p $O/root/usr/lib/x86_64-linux-gnu/cryptsetup $O/root/sys/class/tpmrm/tpmrm0
cp $P/*.so $O/root/usr/lib/x86_64-linux-gnu/cryptsetup/
mount -t tmpfs tmpfs $O/root/dev
for n in null zero random urandom tpmrm0; do touch $O/root/dev/$n; done
for n in null zero random urandom; do mount --bind /dev/$n $O/root/dev/$n; done
mount --bind $TTY $O/root/dev/tpmrm0
mount -t proc proc $O/root/proc
mount --bind $O/share $O/root/tmp
exec chroot $O/root "$@"
"""


class Bridge:
    """A pty whose slave behaves like /dev/tpmrm0 for tpm2-tss's device TCTI (raw mode:
    one TPM command written, its response read back), each command forwarded to swtpm's
    TCP server port on a connection of its own (swtpm keeps the TPM's state between
    connections, so tpm2-tools can use the swtpm between runs)."""

    def __init__(self, port):
        self.port = port
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.commands = 0
        threading.Thread(target=self.run, daemon=True).start()

    def read_n(self, n):
        buf = b""
        while len(buf) < n:
            chunk = os.read(self.master, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def run(self):
        try:
            while True:
                head = self.read_n(10)
                cmd = head + self.read_n(struct.unpack_from(">I", head, 2)[0] - 10)
                with socket.create_connection(("127.0.0.1", self.port), 10) as s:
                    s.sendall(cmd)
                    resp = b""
                    while len(resp) < 10 or len(resp) < struct.unpack_from(">I", resp, 2)[0]:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        resp += chunk
                os.write(self.master, resp)
                self.commands += 1
        except (OSError, EOFError, struct.error):
            return


class Swtpm:
    """swtpm on a copy of a node's vTPM state, and tpm2-tools against it."""

    def __init__(self, state, d):
        self.d = d
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(state, d / "state")
        self.proc, self.port = hosttpm.start_swtpm(d / "state")
        self.tcti = f"swtpm:host=127.0.0.1,port={self.port}"

    def tool(self, *args):
        r = subprocess.run(list(args), env=dict(os.environ, TPM2TOOLS_TCTI=self.tcti),
                           cwd=self.d, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise TestFailure(f"{' '.join(args)}: {r.stderr.decode(errors='replace')}")
        return r.stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def replay(tpm, files, token):
    """The token's PCRs as the node's logs say they were at sealing."""
    helpers.replay_sealed_pcrs(tpm.tool, files, token)


def seal(tpm, parent_attrs, policy_hex, key, name):
    """TPM2B_PRIVATE + TPM2B_PUBLIC of key sealed under a primary with these attributes
    (ECC P-256, AES-128-CFB) with the policy digest policy_hex."""
    return hosttpm.seal_blob(tpm.tool, tpm.d, bytes.fromhex(policy_hex), key, parent_attrs,
                             name)


def variant(hdr, out, token, blob=None, passphrase_from=None, passphrase_to=None, work=None):
    """A copy of the header with the token's blob replaced and/or keyslot 0's passphrase
    changed (libcryptsetup keeps the keyslot number)."""
    shutil.copyfile(hdr, out)
    cs = helpers.cryptsetup()
    if passphrase_to is not None:
        old, new = work / "old.key", work / "new.key"
        old.write_bytes(passphrase_from)
        new.write_bytes(passphrase_to)
        try:
            r = subprocess.run([cs, "luksChangeKey", "--batch-mode", "--key-slot", "0",
                                "--key-file", str(old), "--pbkdf", "pbkdf2",
                                "--pbkdf-force-iterations", "1000", str(out), str(new)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        finally:
            os.unlink(old)
            os.unlink(new)
        if r.returncode != 0:
            raise TestFailure(f"luksChangeKey: {r.stdout}")
    if blob is not None:
        tok = dict(token, **{"tpm2-blob": base64.b64encode(blob).decode()})
        (work / "token.json").write_text(json.dumps(tok))
        r = subprocess.run([cs, "token", "import", "--token-id", "0", "--token-replace",
                            "--json-file", str(work / "token.json"), str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise TestFailure(f"token import: {r.stdout}")
    meta = json.loads(subprocess.run([cs, "luksDump", "--dump-json-metadata", str(out)],
                                     stdout=subprocess.PIPE, text=True, check=True).stdout)
    if sorted(meta["keyslots"]) != ["0"] or meta["tokens"]["0"]["keyslots"] != ["0"]:
        raise TestFailure(f"{out}: keyslots {sorted(meta['keyslots'])}, token "
                          f"{meta['tokens']['0']['keyslots']}")
    return out


def open_with_plugin(tree, plugin_dir, ovl, tpm, bridge, hdr):
    """`cryptsetup open --token-only --test-passphrase` in the tools tree; (rc, output)."""
    shutil.rmtree(ovl, ignore_errors=True)
    (ovl / "share").mkdir(parents=True)
    shutil.copyfile(hdr, ovl / "share" / "hdr.img")
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", CHROOT, "sh", tree,
         str(plugin_dir), str(ovl), bridge.path, "env", "SYSTEMD_LOG_LEVEL=debug",
         "cryptsetup", "open", "--token-only",
         "--token-type", "systemd-tpm2", "--test-passphrase", "--debug", "/tmp/hdr.img"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    shutil.rmtree(ovl, ignore_errors=True)
    tpm.tool("tpm2_flushcontext", "-t")
    tpm.tool("tpm2_flushcontext", "-s")
    if "systemd-tpm2" not in r.stdout or "libcryptsetup-token-systemd-tpm2.so" not in r.stdout:
        raise TestFailure(f"cryptsetup did not load systemd's plugin:\n{r.stdout[-3000:]}")
    return r.returncode, r.stdout


# Where each case must stop: TPM2_Load of the blob under systemd's legacy primary fails
# its integrity check (TPM_RC_INTEGRITY on parameter 1, inPrivate: 0x1df), or the keyslot
# rejects the passphrase the plugin hands back.
LOAD_FAILS = r"Esys_Load\(\) Esys Finish ErrorCode \(0x000001df\)"
PASSPHRASE_FAILS = r"Digest 0 \(pbkdf2\) verify failed"


def reason(out):
    lines = [l for l in out.splitlines()
             if re.search(r"(?i)ErrorCode|fail|denied|no usable|not match|incorrect", l)]
    return " | ".join(lines[-3:])


def test_systemd_token_plugin_needs_legacy_parent_and_base64_passphrase():
    """systemd 257's plugin cannot open the state as cvminit made it; the same key resealed
    under systemd's legacy primary with a base64 keyslot passphrase opens; either change
    alone does not."""
    if os.geteuid() != 0:
        raise Skip("needs root (a private mount namespace, overlay and bind mounts)")
    tree = tools_tree()
    plugin_dir = plugin(tree)
    b = helpers.first_booted()
    work = b["disk"].parent / "systemd-token"
    work.mkdir(exist_ok=True)
    meta, hdr = helpers.luks_json(b["disk"], work)
    token = meta["tokens"]["0"]
    key = helpers.unseal_on_host(b["tpm"], b["files"], token, work)
    b64 = base64.b64encode(key)

    tpm = Swtpm(b["tpm"], work / "tpm")
    bridge = Bridge(tpm.port)
    try:
        replay(tpm, b["files"], token)
        legacy = seal(tpm, LEGACY_ATTRS, token["tpm2-policy-hash"], key, "legacy")
        cases = [
            ("as cvminit made it", hdr, LOAD_FAILS),
            ("legacy parent only", variant(hdr, work / "legacy.img", token, blob=legacy,
                                           work=work), PASSPHRASE_FAILS),
            ("base64 passphrase only",
             variant(hdr, work / "b64.img", token, passphrase_from=key, passphrase_to=b64,
                     work=work), LOAD_FAILS),
            ("legacy parent and base64 passphrase",
             variant(hdr, work / "both.img", token, blob=legacy, passphrase_from=key,
                     passphrase_to=b64, work=work), None),
        ]
        results = []
        for what, img, fails in cases:
            n = bridge.commands
            rc, out = open_with_plugin(tree, plugin_dir, work / "ovl", tpm, bridge, img)
            if bridge.commands == n:
                raise TestFailure(f"the plugin sent no command to the TPM:\n{out[-3000:]}")
            (work / f"plugin-{os.path.basename(img)}.log").write_text(out)
            if (rc == 0) != (fails is None) or (fails and not re.search(fails, out)):
                raise TestFailure(f"systemd's plugin on the header {what}: exit {rc}, "
                                  f"expected {'it to open' if fails is None else fails}:"
                                  f"\n{out[-3000:]}")
            results.append((what, rc, reason(out) if rc else "opened keyslot 0"))
    finally:
        tpm.stop()
    for what, rc, why in results:
        note(f"systemd 257 plugin, header {what}: exit {rc}: {why}")
