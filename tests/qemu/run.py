#!/usr/bin/python3
"""Run the QEMU boot scenarios of cvminit.

    tests/qemu/run.py                 run all scenarios
    tests/qemu/run.py --list          list them
    tests/qemu/run.py -k cmdline      run those whose name contains "cmdline"
    tests/qemu/run.py test_boot_ovmf  run the named ones

A scenario is a function test_*() without arguments in tests/qemu/test_*.py; it
passes by returning, fails by raising (vm.TestFailure or anything else) and is
skipped by raising vm.Skip. Scenarios run one at a time. Output per scenario:

    PASS name (12.3 s)
    FAIL name: reason          (more detail indented below)
    SKIP name: reason

and last a line "N passed, N failed" (", N skipped" when any were skipped).
Exit status 0 iff nothing failed.

Inputs (repo-relative): the kernel build/kernel/current/boot/vmlinuz-*
(image/kernel.sh is run when it is missing), the PID 1 build/cvminit, the
module list init/modules.list. The initrd is built once per run into
build/test-work/initrd.cpio with image/mkinitrd.py. Work dirs with
console.log per scenario: build/test-work/<scenario>/.

When build/cvminit (or the kernel) is missing, every scenario that boots a VM
(through vm.boot()) is SKIPped, or FAILs with --strict; the others still run.

Each scenario runs under a time limit (SCENARIO_LIMIT, times the timeout scale): one over it
fails and its VMs are killed; the VMs have their own timeouts too (vm.py). The timeout scale
defaults to CVM_TIMEOUT_SCALE, the rule of tests/timing.py.
"""

import argparse
import glob
import importlib.util
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import timing  # noqa: E402
import vm  # noqa: E402

# Seconds (unscaled) one scenario may take: the longest measured here (a node boot with
# services and a reboot) takes about 140 s, an image rebuild a few minutes.
SCENARIO_LIMIT = 1800


def discover():
    """[(name, function)] in file order, then definition order."""
    found, seen = [], {}
    for path in sorted(HERE.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod
        spec.loader.exec_module(mod)
        for name, obj in vars(mod).items():
            if name.startswith("test_") and callable(obj) and getattr(obj, "__module__", None) == mod.__name__:
                if name in seen:
                    raise SystemExit(f"run.py: scenario {name} defined in both {seen[name]} and {path.name}")
                seen[name] = path.name
                found.append((name, obj))
    return found


def find_kernel(explicit):
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    hits = sorted(glob.glob(str(REPO / "build/kernel/current/boot/vmlinuz-*")))
    return hits[0] if hits else None


def prepare(args):
    """Return (kernel, initrd, None), or with initrd (and maybe kernel) None
    and the reason no VM can boot."""
    kernel = find_kernel(args.kernel)
    if kernel is None and not args.kernel:
        print("run.py: no kernel in build/kernel/current; running image/kernel.sh", flush=True)
        r = subprocess.run(["sh", str(REPO / "image/kernel.sh")], stdout=subprocess.PIPE, text=True)
        if r.returncode == 0:
            kernel = find_kernel(None)
    if kernel is None:
        return None, None, "no kernel (run image/kernel.sh)"
    init = Path(args.init)
    if not init.is_file():
        return kernel, None, f"{args.init} not built (make)"
    ver = Path(kernel).name[len("vmlinuz-"):]
    kmod = Path(kernel).parent.parent / "lib" / "modules" / ver
    work = REPO / "build" / "test-work"
    work.mkdir(parents=True, exist_ok=True)
    initrd = work / "initrd.cpio"
    cmd = [sys.executable, str(REPO / "image/mkinitrd.py"), "--init", str(init)]
    if args.modules_list != "none":
        cmd += ["--modules-list", args.modules_list, "--kmod-dir", str(kmod)]
    # Scenarios build variants of this initrd (vm.initrd_with) with extra files.
    vm.config.mkinitrd = list(cmd)
    cmd += ["--output", str(initrd)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in r.stdout.splitlines():
        print(f"  {line}")
    if r.returncode != 0:
        return kernel, None, "building the initrd failed"
    return kernel, str(initrd), None


class Interrupted(BaseException):
    pass


class OverLimit(BaseException):
    """Raised in the scenario by SIGALRM; not an Exception, so no scenario catches it."""


def _sigterm(signum, frame):
    raise Interrupted()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", help="scenario names to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("-k", dest="filters", action="append", default=[],
                    help="run scenarios whose name contains this (repeatable: any)")
    ap.add_argument("--init", default=str(REPO / "build/cvminit"), help="PID 1 binary (default build/cvminit)")
    ap.add_argument("--kernel", help="vmlinuz (default build/kernel/current/boot/vmlinuz-*)")
    ap.add_argument("--modules-list", default=str(REPO / "init/modules.list"),
                    help="module list for the initrd, or 'none'")
    ap.add_argument("--seabios", action="store_true",
                    help="SeaBIOS instead of OVMF for scenarios that do not choose")
    ap.add_argument("--timeout-scale", type=float, default=timing.scale(),
                    help="multiply scenario timeouts (slow or loaded machines)")
    ap.add_argument("--strict", action="store_true",
                    help="missing kernel or cvminit fails the scenarios instead of skipping them")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the serial console")
    args = ap.parse_args(argv)

    scenarios = discover()
    names = [n for n, _ in scenarios]
    unknown = [s for s in args.scenarios if s not in names]
    if unknown:
        print(f"run.py: unknown scenario(s): {' '.join(unknown)}", file=sys.stderr)
        return 2
    sel = [(n, f) for n, f in scenarios
           if (not args.scenarios or n in args.scenarios)
           and (not args.filters or any(k in n for k in args.filters))]
    if args.list:
        for n, f in sel:
            doc = (f.__doc__ or "").strip().splitlines()
            print(f"{n}{'  - ' + doc[0] if doc else ''}")
        return 0

    if args.verbose:
        os.environ["CVM_TEST_ECHO"] = "1"
    if not args.timeout_scale > 0:
        print("run.py: --timeout-scale must be positive", file=sys.stderr)
        return 2
    os.environ[timing.ENV] = repr(args.timeout_scale)  # what the scenarios' helpers read
    limit = SCENARIO_LIMIT * args.timeout_scale

    def _over_limit(signum, frame):
        raise OverLimit()
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGALRM, _over_limit)
    t_run = time.monotonic()
    passed = failed = skipped = 0

    kernel, initrd, missing = prepare(args)
    vm.config.kernel, vm.config.initrd = kernel, initrd
    vm.config.missing, vm.config.strict = missing, args.strict
    vm.config.ovmf = not args.seabios
    vm.config.timeout_scale = args.timeout_scale

    try:
        for name, fn in sel:
            vm.config.current = name
            vm.config.notes = []
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                try:
                    fn()
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except OverLimit:
                failed += 1
                vm._cleanup_all()  # its VMs, still running
                print(f"FAIL {name}: no result within {limit:g} s (the scenario's time limit), "
                      "its VMs killed", flush=True)
            except vm.Skip as e:
                skipped += 1
                print(f"SKIP {name}: {e}", flush=True)
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as e:  # noqa: BLE001 - any error fails the scenario
                failed += 1
                dt = time.monotonic() - t0
                if isinstance(e, vm.TestFailure):
                    msg = str(e) or "assertion failed"
                elif isinstance(e, AssertionError):
                    tb = traceback.extract_tb(e.__traceback__)[-1]
                    msg = f"{e or 'assertion failed'} ({Path(tb.filename).name}:{tb.lineno})"
                else:
                    msg = "".join(traceback.format_exception(e)).rstrip()
                    msg = f"{type(e).__name__}: {e}\n{msg}"
                first, _, rest = msg.partition("\n")
                print(f"FAIL {name}: {first} ({dt:.1f} s)", flush=True)
                if rest:
                    print("\n".join("    " + l for l in rest.splitlines()), flush=True)
            else:
                passed += 1
                print(f"PASS {name} ({time.monotonic() - t0:.1f} s)", flush=True)
            for n in vm.config.notes:
                print(f"    note: {n}", flush=True)
    except (KeyboardInterrupt, Interrupted):
        vm._cleanup_all()
        print(f"\ninterrupted during {vm.config.current}", flush=True)
        failed += 1
        print(_summary(passed, failed, skipped))
        return 130
    finally:
        vm._cleanup_all()

    print(f"    total {time.monotonic() - t_run:.1f} s", flush=True)
    print(_summary(passed, failed, skipped), flush=True)
    return 0 if failed == 0 else 1


def _summary(p, f, s):
    return f"{p} passed, {f} failed" + (f", {s} skipped" if s else "")


if __name__ == "__main__":
    sys.exit(main())
