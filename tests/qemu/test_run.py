"""`make run`'s launcher (image/run.sh) with the product image: the node joins the
development cvm-join that run.sh starts for it, and that service stops with the VM. The
VM's files go to a scratch RUN_DIR, never the user's build/run/."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import helpers
from vm import REPO, WORK_ROOT, TestFailure, note, scaled

RUN_SH = REPO / "image" / "run.sh"


def _qmp(path, *commands):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        f = s.makefile("rwb")
        f.readline()
        for c in ("qmp_capabilities",) + commands:
            f.write(f'{{"execute": "{c}"}}\n'.encode())
            f.flush()
            f.readline()


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_make_run_joins():
    """image/run.sh boots build/image/cvminit.raw (a vTPM with an EK certificate made for
    it, the image's join address forwarded): the console shows the join service ready,
    then kubelet's start (the product image has no kubelet: its exec fails by name);
    run.sh's cvm-join logged ATTESTED and JOINED; after a power-off through QMP, run.sh
    returns and its cvm-join is gone."""
    helpers.image_or_fail()
    for f in (helpers.IMAGE_DIR / "join-measurements.json", helpers.CVM_JOIN):
        if not f.is_file():
            raise TestFailure(f"{f} is missing (make image build/cvm-join)")
    run = WORK_ROOT / "make_run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    run.mkdir(parents=True)
    lines = []
    t0 = time.monotonic()
    p = subprocess.Popen(["bash", str(RUN_SH)], env=dict(os.environ, RUN_DIR=str(run)),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)

    def read():
        with open(run / "console.log", "w") as log:
            for raw in p.stdout:
                text = raw.decode(errors="replace").replace("\r", "")
                lines.append(text)
                log.write(text)

    threading.Thread(target=read, daemon=True).start()

    def wait(regex, timeout):
        rx = re.compile(regex)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for i, s in enumerate(lines):
                if rx.search(s):
                    return i
            if p.poll() is not None:
                break
            time.sleep(0.5)
        raise TestFailure(f"/{regex}/ not on run.sh's console within {timeout:.0f} s "
                          f"(exit {p.poll()}):\n{''.join(lines[-40:])}")

    try:
        m = wait(r"join +cvm-join on 127\.0\.0\.1:\d+ for the node's 10\.0\.2\.100:7742", 30)
        ready = wait(r"cvminit: join: ready \(socket ", scaled(400))
        joined_at = time.monotonic() - t0
        kubelet = wait(r"cvminit: kubelet: (started|exec /usr/bin/kubelet: No such file)",
                       scaled(120))
        if kubelet < ready:
            raise TestFailure("kubelet was started before the join service was ready")
        log = (run / "cvm-join.log").read_text()
        for want in ("AK binding: ok", "ATTESTED", "JOINED"):
            if want not in log:
                raise TestFailure(f"run.sh's cvm-join log lacks {want!r}:\n{log}")
        pid = int(subprocess.run(["pgrep", "-s", str(p.pid), "-f", "build/cvm-join"],
                                 stdout=subprocess.PIPE, text=True).stdout.split()[0])
        _qmp(run / "qmp.sock", "system_powerdown")
        p.wait(scaled(120))
        end = time.monotonic() + 10
        while _running(pid):  # a zombie waiting for its new parent to reap it is gone
            if time.monotonic() > end:
                raise TestFailure(f"run.sh's cvm-join (pid {pid}) outlived the VM")
            time.sleep(0.2)
        note(f"make run: joined {joined_at:.1f} s after run.sh started ({lines[m].strip()})")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
