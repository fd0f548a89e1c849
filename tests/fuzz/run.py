#!/usr/bin/env python3
"""Runs the libFuzzer targets of tests/fuzz/ (built by `make fuzz-build` into build/fuzz/).

  run.py fuzz [--seconds S] [--jobs J] [TARGET…]   make fuzz: each target for S seconds
  run.py check [--seconds S] [TARGET…]             make check's layer: the corpus, then S s
  run.py merge [TARGET…]                           fold build/fuzz/corpus/ into the tree's

fuzz keeps new inputs in build/fuzz/corpus/<target>/ and crashes in build/fuzz/crashes/
<target>/; a crash ends libFuzzer, so the target is started again until its time is used.
It prints one row per target: executions, coverage (libFuzzer's cov: edges and ft:
features at the end), corpus size, crashes, and writes the table to build/fuzz/summary.md.
check prints PASS/FAIL fuzz/<target> lines for tests/run.py. docs/fuzzing.md has the rest."""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# FUZZ_BIN: another build of the targets (a long run from a copy while the tree rebuilds).
BIN = os.environ.get("FUZZ_BIN") or os.path.join(ROOT, "build/fuzz")
SEEDS = os.path.join(ROOT, "tests/fuzz/corpus")
DICTS = os.path.join(ROOT, "tests/fuzz/dict")

# The longest input worth mutating per target: what the reader takes at most (the LUKS2
# area plus the checksum byte, /proc/cmdline) or a little more than the seeds.
MAX_LEN = {"luks2": 32769, "luks2_diff": 32769, "token": 12288, "cmdline": 4096,
           "config": 16384, "reference": 8192, "cel": 16384, "tcglog": 16384,
           "pe": 16384, "cpio": 8192, "platform": 1100}

UNIT = re.compile(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
EXECS = re.compile(r"^stat::number_of_executed_units: (\d+)")
ARTIFACT = re.compile(r"Test unit written to (\S+)")


def targets(names):
    have = sorted(os.path.basename(p)[len("fuzz_"):]
                  for p in glob.glob(os.path.join(BIN, "fuzz_*")) if os.access(p, os.X_OK))
    if not have:
        sys.exit("run.py: no targets in build/fuzz (run make fuzz-build)")
    for n in names:
        if n not in have:
            sys.exit(f"run.py: no target {n} (have: {' '.join(have)})")
    return names or have


def options(t, seconds, artifacts):
    opts = [f"-max_len={MAX_LEN.get(t, 8192)}", "-timeout=25", "-rss_limit_mb=2048",
            "-print_final_stats=1", f"-max_total_time={max(1, int(seconds))}",
            f"-artifact_prefix={artifacts}/"]
    d = os.path.join(DICTS, f"{t}.dict")
    if os.path.exists(d):
        opts.append(f"-dict={d}")
    return opts


def run_once(t, argv, log):
    """One libFuzzer process; returns (exit status, execs, cov, ft, corpus, artifacts)."""
    execs = cov = ft = corp = 0
    arts = []
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    for line in proc.stdout:
        log.write(line)
        m = UNIT.match(line)
        if m:
            execs, cov, ft, corp = (int(x) for x in m.groups())
        m = EXECS.match(line)
        if m:
            execs = int(m.group(1))
        m = ARTIFACT.search(line)
        if m:
            arts.append(m.group(1))
    return proc.wait(), execs, cov, ft, corp, arts


def fuzz_one(t, seconds, results):
    corpus = os.path.join(ROOT, "build/fuzz/corpus", t)
    crashes = os.path.join(ROOT, "build/fuzz/crashes", t)
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    os.makedirs(os.path.join(ROOT, "build/fuzz/logs"), exist_ok=True)
    total = dict(execs=0, cov=0, ft=0, corp=0, crashes=[], runs=0)
    start = time.monotonic()
    with open(os.path.join(ROOT, "build/fuzz/logs", f"{t}.log"), "w") as log:
        while True:
            left = seconds - (time.monotonic() - start)
            if left < 1:
                break
            argv = [os.path.join(BIN, f"fuzz_{t}")] + options(t, left, crashes) + \
                [corpus, os.path.join(SEEDS, t)]
            rc, execs, cov, ft, corp, arts = run_once(t, argv, log)
            total["runs"] += 1
            total["execs"] += execs
            total["cov"], total["ft"], total["corp"] = max(total["cov"], cov), \
                max(total["ft"], ft), corp
            total["crashes"] += arts
            if rc != 0 and not arts:
                total["crashes"].append(f"exit status {rc}, see build/fuzz/logs/{t}.log")
                break
    total["seconds"] = time.monotonic() - start
    results[t] = total
    print(f"fuzz/{t}: {total['execs']} execs in {total['seconds']:.0f} s, "
          f"cov {total['cov']} ft {total['ft']}, {len(total['crashes'])} crash(es)", flush=True)


def cmd_fuzz(args):
    names = targets(args.targets)
    if args.nice:
        os.nice(args.nice)
    results = {}
    pending = list(names)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                t = pending.pop(0)
            fuzz_one(t, args.seconds, results)
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    rows = ["| target | seconds | executions | exec/s | cov | ft | corpus | crashes |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in names:
        r = results[t]
        crashes = ", ".join(os.path.relpath(c, ROOT) if os.path.exists(c) else c
                            for c in r["crashes"]) or "0"
        rows.append(f"| {t} | {r['seconds']:.0f} | {r['execs']} | "
                    f"{r['execs'] / max(r['seconds'], 1):.0f} | {r['cov']} | {r['ft']} | "
                    f"{r['corp']} | {crashes} |")
    table = "\n".join(rows)
    with open(os.path.join(ROOT, "build/fuzz/summary.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    return 1 if any(results[t]["crashes"] for t in names) else 0


def cmd_check(args):
    names = targets(args.targets)
    failed = 0
    for t in names:
        with tempfile.TemporaryDirectory(prefix=f"cvminit-fuzz-{t}.") as tmp:
            argv = [os.path.join(BIN, f"fuzz_{t}")] + options(t, args.seconds, tmp) + \
                [tmp, os.path.join(SEEDS, t)]
            with open(os.path.join(tmp, "log"), "w+") as log:
                rc, execs, cov, ft, corp, arts = run_once(t, argv, log)
                log.seek(0)
                out = log.read()
            seeds = len(os.listdir(os.path.join(SEEDS, t)))
            if rc == 0 and not arts:
                print(f"PASS fuzz/{t}: {seeds} corpus inputs, {execs} execs, cov {cov}")
                continue
            failed += 1
            print(f"FAIL fuzz/{t}: exit status {rc}")
            for line in out.splitlines()[-25:]:
                print(f"  {line}")
            for a in arts:
                keep = os.path.join(ROOT, "build/fuzz/crashes", t)
                os.makedirs(keep, exist_ok=True)
                shutil.copy(a, keep)
                print(f"  input kept as build/fuzz/crashes/{t}/{os.path.basename(a)}; "
                      f"reproduce: build/fuzz/fuzz_{t} build/fuzz/crashes/{t}/"
                      f"{os.path.basename(a)}")
    return 1 if failed else 0


def cmd_merge(args):
    for t in targets(args.targets):
        new = os.path.join(ROOT, "build/fuzz/corpus", t)
        if not os.path.isdir(new) or not os.listdir(new):
            continue
        before = len(os.listdir(os.path.join(SEEDS, t)))
        argv = [os.path.join(BIN, f"fuzz_{t}"), "-merge=1",
                f"-max_len={MAX_LEN.get(t, 8192)}", os.path.join(SEEDS, t), new]
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        after = len(os.listdir(os.path.join(SEEDS, t)))
        print(f"fuzz/{t}: {after - before} input(s) added to tests/fuzz/corpus/{t}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fuzz")
    f.add_argument("--seconds", type=float, default=120)
    f.add_argument("--jobs", type=int, default=1)
    f.add_argument("--nice", type=int, default=19, help="niceness (0: as started)")
    f.add_argument("targets", nargs="*")
    c = sub.add_parser("check")
    c.add_argument("--seconds", type=float, default=5)
    c.add_argument("targets", nargs="*")
    m = sub.add_parser("merge")
    m.add_argument("targets", nargs="*")
    args = ap.parse_args()
    return {"fuzz": cmd_fuzz, "check": cmd_check, "merge": cmd_merge}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
