"""A node's vTPM on the host: swtpm started on a node's state directory (a copy, or the
state itself when the test means to change it), driven with tpm2-tools. What an attacker
with the node's TPM, or a rescue host, can do; the QEMU tests use it to unseal, seal and
replay PCRs outside the guest."""
import os
import socket
import subprocess
import time
from contextlib import contextmanager

from vm import SWTPM, TestFailure, manufacture_tpm

# The SRK: the TCG ECC template (NIST P-256, AES-128-CFB), as cvminit's seal.c makes it.
SRK_ARGS = ("tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb",
            "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|"
            "decrypt")


def free_ports():
    """A port p with p and p + 1 free on 127.0.0.1 (swtpm's server and control)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65535:
                continue
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", p + 1))
                    return p
            except OSError:
                continue
    raise TestFailure("no two consecutive free ports")


def wait_swtpm(proc, port):
    for _ in range(200):
        if proc.poll() is not None:
            raise TestFailure(f"swtpm exited with {proc.returncode} (port {port})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TestFailure(f"swtpm does not answer on port {port}")


def start_swtpm(state_dir):
    """swtpm on state_dir, listening on 127.0.0.1 only, PCRs reset (a fresh boot).
    Returns (process, port)."""
    port = free_ports()
    proc = subprocess.Popen([SWTPM, "socket", "--tpm2", "--tpmstate", f"dir={state_dir}",
                             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                             "--flags", "not-need-init,startup-clear"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_swtpm(proc, port)
    return proc, port


def ek_swtpm(work):
    """A vTPM manufactured with an EK certificate (vm.manufacture_tpm: state work/tpm, its
    local CA work/ca) and swtpm started on it (start_swtpm). Returns (process, port, ca)."""
    ca, state = work / "ca", work / "tpm"
    state.mkdir(parents=True)
    manufacture_tpm(state, ca, work)
    proc, port = start_swtpm(state)
    return proc, port, ca


@contextmanager
def host_tpm(state_dir, cwd):
    """Yields tool(*args): runs a tpm2-tools command in cwd against swtpm on state_dir and
    returns its stdout, failing the test with its stderr when it fails."""
    proc, port = start_swtpm(state_dir)
    env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:host=127.0.0.1,port={port}")

    def tool(*args):
        r = subprocess.run([str(a) for a in args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise TestFailure(f"{' '.join(map(str, args))}: "
                              f"{r.stderr.decode(errors='replace')}")
        return r.stdout

    try:
        yield tool
    finally:
        proc.terminate()
        proc.wait(5)


def seal_blob(tool, cwd, policy, key, parent_attrs=None, name="sealed"):
    """TPM2_Create of key as a keyedhash sealed object (fixedTPM | fixedParent, no
    password) with the policy digest policy, under a primary of the ECC template with
    parent_attrs (default: the SRK's). Returns TPM2B_PRIVATE then TPM2B_PUBLIC, as the
    systemd-tpm2 token stores them. The key file is removed again."""
    args = list(SRK_ARGS)
    if parent_attrs:
        args[args.index("-a") + 1] = parent_attrs
    (cwd / f"{name}.policy").write_bytes(policy)
    (cwd / f"{name}.key").write_bytes(key)
    try:
        tool(*args, "-c", f"{name}.parent.ctx")
        tool("tpm2_create", "-Q", "-C", f"{name}.parent.ctx", "-g", "sha256", "-a",
             "fixedtpm|fixedparent", "-L", f"{name}.policy", "-i", f"{name}.key", "-u",
             f"{name}.pub", "-r", f"{name}.priv")
        tool("tpm2_flushcontext", "-t")
    finally:
        os.unlink(cwd / f"{name}.key")
    return (cwd / f"{name}.priv").read_bytes() + (cwd / f"{name}.pub").read_bytes()
