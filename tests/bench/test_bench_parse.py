#!/usr/bin/env python3
"""The bench's parsers on recorded text (no VM): the probe's records on a line another writer
shares, systemd's report block with its critical chain. PASS/FAIL lines for tests/run.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402

FAILED = 0


def check(name, cond, detail=""):
    global FAILED
    print(f"{'PASS' if cond else 'FAIL'} bench/{name}{': ' + detail if detail and not cond else ''}")
    FAILED += not cond


def lines(*texts):
    return [(1.0 + i, t) for i, t in enumerate(texts)]


def test_probe_interleaved():
    chan = lines(
        # another writer's text before the record, on the same line
        "<6>svc: hellox[   12.345678] bench-probe: start mono_us=12345678 boottime_us=1 hz=100",
        # and after it, glued to the last value
        "[   12.400000] bench-probe: pid1 comm=cvminit sched_ns=2000000000 utime=100 stime=50 "
        "cutime=0 cstime=0 rss_kb=1500 hwm_kb=2000[  OK  ] Started foo.service",
        "[   12.500000] bench-probe: top nproc=3 init:1:700 contain:ERD garbage containerd:90:385",
        "[   12.600000] bench-probe: cpu busy_ticks=1891 user_ticks=1 system_ticks=2 idle_ticks=3",
        "junk [   12.700000] bench-probe: end")
    p = bench.parse_probe(chan)
    check("probe_interleaved_start", p.get("start", {}).get("mono_us") == "12345678",
          repr(p.get("start")))
    check("probe_interleaved_guest_time", abs(p["start"]["_guest_t"] - 12.345678) < 1e-9
          if "start" in p else False)
    check("probe_interleaved_tail", p.get("pid1", {}).get("hwm_kb") == "2000",
          repr(p.get("pid1")))
    check("probe_top_skips_junk", [x["comm"] for x in p.get("top", [])] == ["init", "containerd"],
          repr(p.get("top")))
    import re
    check("probe_end_found", any(re.search(bench.PROBE_END, s) for _, s in chan))
    # a record that is really missing stays missing
    check("probe_missing", "var" not in p)


def test_cvminit_module_waits():
    """The module rows: the foreground stage plus its background waits (for the root's
    modules and the state volume's), and the config's modules either as the old
    "modules-extra" stage or from the loader's line (waited for)."""
    con = lines(
        "[    4.000000] cvminit: timeline: init-start 4000.000 ms (+4000.000 ms) cpu 1.000 ms",
        "[    4.000100] cvminit: timeline: mounts 4100.000 ms (+100.000 ms) cpu 2.000 ms",
        "[    4.000200] cvminit: timeline: modules 4400.000 ms (+300.000 ms) cpu 3.000 ms",
        "[    4.000250] cvminit: timeline: config 4600.000 ms (+200.000 ms) cpu 3.500 ms",
        "[    4.000260] cvminit: timeline: modules-root 4650.000 ms (+50.000 ms) cpu 3.600 ms",
        "[    4.000300] cvminit: timeline: root-open 4900.000 ms (+250.000 ms) cpu 4.000 ms",
        "[    4.000255] cvminit: modules: root modules loaded in the background, 210 ms "
        "after their start (waited for 50 ms)",
        "[    4.000400] cvminit: timeline: state-open 5100.000 ms (+200.000 ms) cpu 5.000 ms",
        "[    4.000350] cvminit: modules: root and state modules loaded in the background, "
        "590 ms after their start (waited for 25 ms; the loader's CPU 480 ms)",
        "[    9.000000] cvminit: modules: config modules loaded in the background, 6865 ms "
        "after their start (waited for 120 ms)")
    r = bench.parse_cvminit(con, bench.printk_lines(con))
    rows = {k: f for k, _, _, f in bench.ROWS}
    check("modules_stage", abs(rows["modules"](r) - 0.3) < 1e-9, repr(r["stage_s"]))
    check("modules_with_waits", abs(rows["modules_bg"](r) - 0.375) < 1e-9,
          repr(r.get("loader_wait")))
    # the loader's CPU (a child's, not in PID 1's): counted in init's own CPU
    check("loader_cpu", r["loader_cpu"] == [(4.00035, 0.48)], repr(r["loader_cpu"]))
    # init's own CPU: PID 1's since cvminit's start, plus the loaders that ended before
    # kubelet's start (not the one after it)
    r.update(pid1_cpu=3.0, kubelet_started=4.5, loader_cpu=r["loader_cpu"] + [(9.0, 1.2)])
    check("own_cpu_with_loaders", abs(bench.own_cpu(r) - (3.0 - 0.001 + 0.48)) < 1e-9,
          repr(bench.own_cpu(r)))
    check("config_modules_waited", abs(rows["modules_extra"](r) - 0.12) < 1e-9,
          repr(r.get("config_modules_wait")))
    old = lines("[    4.000000] cvminit: timeline: init-start 4000.000 ms (+4000.000 ms)",
                "[    4.000050] cvminit: timeline: modules 4300.000 ms (+300.000 ms)",
                "[    4.000060] cvminit: modules: state modules loaded in the background, 600 "
                "ms after their start (waited for 90 ms)",
                "[    4.000070] cvminit: timeline: modules-wait 4900.000 ms (+600.000 ms)",
                "[    4.000100] cvminit: timeline: modules-extra 5000.000 ms (+100.000 ms)")
    r = bench.parse_cvminit(old, bench.printk_lines(old))
    check("config_modules_old_stage", abs(rows["modules_extra"](r) - 0.1) < 1e-9,
          repr(r["stage_s"]))
    check("modules_old_state_wait", abs(rows["modules_bg"](r) - 0.39) < 1e-9,
          repr(r.get("loader_wait")))


def test_join_rows():
    """The join's rows: its own time, kubelet's wait for it once containerd and the network
    are ready, its share of init start → kubelet; none for a run without a join (the
    systemd reference, an image from before the join)."""
    con = lines(
        "[    3.000000] cvminit: timeline: init-start 3000.000 ms (+3000.000 ms) cpu 1.000 ms",
        "[    8.540000] cvminit: containerd: started (pid 146): /usr/bin/containerd",
        "[   11.700000] cvminit: containerd: ready (socket accepted after 3320 ms)",
        "[   13.900000] cvminit: network: ready (IPv6 default route on eth0)",
        "[   13.970000] cvminit: join: started (pid 174): /usr/lib/cvminit/cvminit-agent",
        "[   16.900000] cvminit: join: ready (socket /run/cvminit/join.sock accepted)",
        "[   16.950000] cvminit: kubelet: started (pid 175): /usr/bin/kubelet")
    r = bench.parse_cvminit(con, bench.printk_lines(con))
    r["kubelet_started"] = 17.0   # the probe's record
    rows = {k: f for k, _, _, f in bench.ROWS}
    check("join_own", abs(rows["join"](r) - 2.93) < 1e-9, repr(r.get("join_started")))
    check("join_wait", abs(rows["join_wait"](r) - 3.0) < 1e-9,
          repr((r.get("join_ready"), r.get("network_ready"))))
    check("join_share", abs(rows["join_share"](r) - 100 * 3.0 / 14.0) < 1e-9)
    import svg
    seg = svg.segments(dict(r, kernel_start_wall=10.0, root=4.0, state=6.0))
    joins = [(a, b) for k, a, b in seg if k == "join"]
    check("join_in_timeline", len(joins) == 1 and abs(joins[0][0] - 23.97) < 1e-9 and
          abs(joins[0][1] - 26.9) < 1e-9 and seg[-1][0] == "kubelet", repr(seg))
    # containerd ready after the join: kubelet waited for containerd, not for the join
    late = dict(r, containerd_ready=17.5)
    check("join_wait_none_after_containerd", rows["join_wait"](late) == 0.0)
    old = lines("[    3.000000] cvminit: timeline: init-start 3000.000 ms (+3000.000 ms)",
                "[   11.700000] cvminit: containerd: ready (socket accepted after 3320 ms)",
                "[   13.900000] cvminit: network: ready (IPv6 default route on eth0)",
                "[   13.950000] cvminit: kubelet: started (pid 175): /usr/bin/kubelet")
    r = bench.parse_cvminit(old, bench.printk_lines(old))
    r["kubelet_started"] = 14.0
    results = {img: {"later": [], "first": []} for img in bench.IMAGES}
    results["cvminit"]["later"].append(r)
    results["systemd"]["later"].append({"init_start": 2.0, "kubelet_started": 60.0,
                                        "containerd_ready": 50.0, "network_ready": 40.0})
    text, stats = bench.table(results, "later")
    check("join_absent_is_empty", stats["join"]["cvminit"] is None and
          stats["join_share"]["systemd"] is None, repr(stats["join"]))
    row = next(x for x in text.splitlines() if x.startswith("| join's share"))
    check("join_row_no_ratio", row.endswith("| – | – | – |"), row)


def test_initrd_config_join():
    """has_join reads the config from the UKI's initrd (a compressed cpio after a plain
    one, as the image's modules archive follows the main one)."""
    import subprocess
    import tempfile
    conf = b"service containerd\n\texec /usr/bin/containerd\nservice join\n\texec /x\n"
    plain = bench.newc([("init", 0o100755, b"\x7fELF")])
    with_join = bench.newc([("etc/cvminit/cvminit.conf", 0o100644, conf)])
    packed = subprocess.run(["zstd", "-q", "-c"], input=with_join, stdout=subprocess.PIPE,
                            check=True).stdout
    without = bench.newc([("etc/cvminit/cvminit.conf", 0o100644,
                           conf.replace(b"service join", b"service attest"))])
    found = {}
    for name, initrd in (("packed", plain + packed), ("without", plain + without)):
        with tempfile.NamedTemporaryFile(suffix=".efi") as f:
            f.write(pe_with_initrd(initrd))
            f.flush()
            found[name] = bench.has_join(f.name)
    check("initrd_config_join", found == {"packed": True, "without": False}, repr(found))
    members = bench.cpio_members(plain + packed)
    check("cpio_members_sizes", members.get("init", (0,))[0] == 4 and
          members.get("etc/cvminit/cvminit.conf", (0,))[0] == len(conf), repr(members))


def test_growth_configs():
    """bench-growth's service counts from the image's own config (5 services since the
    join): 1 (kubelet alone), 4 (attest dropped: kubelet does not wait for it), 8 (3 idle)."""
    import re
    base = (bench.REPO / "rootfs-overlay/etc/cvminit/cvminit.conf").read_text()
    names = {}
    for name, (edit, _) in bench.GROWTH_VARIANTS.items():
        conf = edit(base)
        names[name] = re.findall(r"^service (\S+)", conf, re.M)
    check("growth_svc1", names["svc1"] == ["kubelet"], repr(names["svc1"]))
    check("growth_svc4", sorted(names["svc4"]) == ["containerd", "join", "kubelet", "network"],
          repr(names["svc4"]))
    check("growth_svc8", len(names["svc8"]) == 8 and {"attest", "join"} <= set(names["svc8"]),
          repr(names["svc8"]))
    svc4 = bench.GROWTH_VARIANTS["svc4"][0](base)
    check("growth_svc4_keeps_kubelet_after", re.search(
        r"^\tafter containerd network join$", svc4, re.M) is not None)


def pe_with_initrd(initrd):
    """The smallest PE file pe_sections reads: a header and one .initrd section."""
    import struct
    pe = 0x40
    head = bytearray(0x200)
    struct.pack_into("<I", head, 0x3C, pe)
    head[pe:pe + 4] = b"PE\0\0"
    struct.pack_into("<HH", head, pe + 4, 0x8664, 1)      # machine, one section
    struct.pack_into("<H", head, pe + 20, 0)              # no optional header
    table = pe + 24
    struct.pack_into("<8sIIII", head, table, b".initrd", len(initrd), 0, len(initrd), 0x200)
    return bytes(head) + initrd


def test_critical_chain():
    text = """\
bench-report: critical-chain
The time when unit became active or started is printed after the "@" character.
The time the unit took to start is printed after the "+" character.

kubelet.service @2min 31.523s
\u2514\u2500containerd.service @2min 12.101s +19.387s
  \u2514\u2500network-online.target @2min 10.880s
    \u2514\u2500systemd-networkd-wait-online.service @1min 58.120s +12.711s
      \u2514\u2500systemd-networkd.service @1min 50.002s +8.101s
        \u2514\u2500systemd-journald.socket @45.210s
          \u2514\u2500-.mount @1.000s
"""
    chain = bench.parse_critical_chain(text.splitlines())
    names = [c["unit"] for c in chain]
    check("chain_units", names == ["kubelet.service", "containerd.service",
                                   "network-online.target",
                                   "systemd-networkd-wait-online.service",
                                   "systemd-networkd.service", "systemd-journald.socket",
                                   "-.mount"], repr(names))
    check("chain_times", abs(chain[0]["at"] - 151.523) < 1e-6 and
          abs(chain[1]["took"] - 19.387) < 1e-6 and chain[2]["took"] is None,
          repr(chain[:3]))


def test_attribution():
    # init start 2.0; initrd milestones at 4.0 (verity) and 6.0 (sysroot); switch-root 7.0;
    # the root's manager at 8.0; kubelet at 20.0: an 18 s path. Root chain (relative to 8.0;
    # "@" is when a start job began): containerd 8..12 → 16..20, networkd 5..7 → 13..15;
    # uncovered: 8..13 and 15..16.
    chain = [{"unit": "kubelet.service", "at": 12.0, "took": None},
             {"unit": "containerd.service", "at": 8.0, "took": 4.0},
             {"unit": "network-online.target", "at": 7.0, "took": None},
             {"unit": "systemd-networkd.service", "at": 5.0, "took": 2.0}]
    r = {"critical_chain": chain, "userspace_start": 8.0, "init_start": 2.0,
         "switch_root": 7.0, "kubelet_started": 20.0,
         "events": [("verity", 4.0), ("sysroot", 6.0), ("containerd exec", 16.0)]}
    share, parts, gaps = bench.chain_attribution(r)
    # explained: initrd 5 + switch 1 + chain 4 + 2 = 12 of 18
    check("attribution_share", abs(share - 100 * 12 / 18) < 1e-9, repr(share))
    check("attribution_parts", parts[0] == ("containerd.service", 4.0) and
          ("initrd: → verity", 2.0) in parts and ("initrd: → switch-root", 1.0) in parts,
          repr(parts))
    check("attribution_gaps", [(g["from"], g["to"]) for g in gaps] == [(6.0, 11.0),
                                                                       (13.0, 14.0)],
          repr(gaps))
    check("attribution_no_samples_unexplained",
          all(g["explained"] == 0.0 and not g["cpu"] for g in gaps), repr(gaps))


def test_gap_cpu():
    """The gaps between the chain's start jobs, explained by the CPU the machine spent in
    them (the reference's sampler, printed in bench-report's block): busy seconds shared
    among PID 1, the units and the kernel; an idle second and a stretch after the last
    sample stay unexplained. Same path as test_attribution: gaps 8..13 and 15..16."""
    u = 1000000
    report = [
        "bench-report: begin",
        "InitRDTimestampMonotonic=2000000",
        "UserspaceTimestampMonotonic=8000000",
        "UdevDevices=412",
        "DeviceUnits=57",
        "Modules=dm_crypt virtio_net ",
        "bench-report: all-units",
        "Id=systemd-udev-trigger.service",
        "InactiveExitTimestampMonotonic=8500000",
        "ActiveEnterTimestampMonotonic=12000000",
        "InactiveEnterTimestampMonotonic=0",
        "",
        # a oneshot that went back to inactive: starting 9..10
        "Id=modprobe@fuse.service",
        "InactiveExitTimestampMonotonic=9000000",
        "ActiveEnterTimestampMonotonic=0",
        "InactiveEnterTimestampMonotonic=10000000",
        "",
        # left inactive in the initrd, stopped there with no record of its end: not listed
        "Id=initrd-cleanup.service",
        "InactiveExitTimestampMonotonic=6000000",
        "ActiveEnterTimestampMonotonic=0",
        "",
        "Id=dev-vda.device",
        "InactiveExitTimestampMonotonic=8000000",
        "ActiveEnterTimestampMonotonic=12500000",
        "",
        "Id=systemd-networkd.service",
        "InactiveExitTimestampMonotonic=13000000",
        "ActiveEnterTimestampMonotonic=15000000",
        "",
        "Id=never-started.service",
        "InactiveExitTimestampMonotonic=0",
        "ActiveEnterTimestampMonotonic=0",
        "",
        "bench-report: samples",
        # totals; a cgroup only when it changed (journald's first line carries over)
        f"s {8 * u} busy=1000 idle=500 q=1 init.scope=10000000 systemd-udevd.service=2000000 "
        "systemd-journald.service=4000000",
        f"s {9 * u} busy=1100 idle=600 q=1 init.scope=10600000 systemd-udevd.service=2300000",
        f"s {10 * u} busy=1300 idle=600 q=0 init.scope=11100000 systemd-udevd.service=3800000",
        "[  OK  ] s 10500000 busy=garbage",            # another writer's damage: skipped
        f"s {11 * u} busy=1350 idle=750 q=0 systemd-journald.service=4500000",
        f"s {12 * u} busy=1350 idle=950 q=0",
        f"s {13 * u} busy=1450 idle=1050 q=0 init.scope=12100000",
        f"s {14 * u} busy=1550 idle=1050 q=0 seq=900 init.scope=12500000",
        f"s {15 * u} busy=1650 idle=1050 q=0 seq=1000 init.scope=12900000",
        "bench-report: journal-sources",
        "     40 \"_COMM\":\"systemd\"",
        "bench-report: critical-chain",
        "kubelet.service @12.000s",
        "\u2514\u2500containerd.service @8.000s +4.000s",
        "  \u2514\u2500network-online.target @7.000s",
        "    \u2514\u2500systemd-networkd.service @5.000s +2.000s",
        "bench-report: end"]
    r = bench.parse_systemd(lines(*report))
    check("samples_parsed", [x["t"] for x in r["samples"]] == [8.0, 9.0, 10.0, 11.0, 12.0, 13.0,
                                                               14.0, 15.0]
          and r["samples"][6]["seq"] == 900 and r["samples"][0]["seq"] is None and r["samples"][3]["cg"]["init.scope"] == 11.1 and
          r["samples"][1]["cg"]["systemd-journald.service"] == 4.0, repr(r["samples"][:4]))
    check("all_units_parsed", r["all_units"].get("systemd-udev-trigger.service") ==
          (8.5, 12.0, None) and r["all_units"].get("modprobe@fuse.service") ==
          (9.0, None, 10.0) and r["all_units"].get("never-started.service") ==
          (None, None, None),
          repr(r["all_units"]))
    g = bench.gap_cpu({"samples": r["samples"][6:]}, 14.0, 14.5)
    check("uevents_counted", g["uevents"] == 50 and abs(g["explained"] - 0.5) < 1e-9, repr(g))
    check("uevents_not_guessed", "uevents" not in bench.gap_cpu(r, 12.0, 14.5), "")
    check("udev_counts", (r.get("udev_devices"), r.get("device_units"), r.get("modules")) ==
          (412, 57, ["dm_crypt", "virtio_net"]), repr(r.get("modules")))
    r.update({"switch_root": 7.0, "kubelet_started": 20.0,
              "events": [("verity", 4.0), ("sysroot", 6.0)]})
    share, parts, gaps = bench.chain_attribution(r)
    # busy per second: 1.0, 2.0 (both vCPUs: the one host thread saturated), 0.5, 0, 1.0;
    # explained 1 + 1 + 0.5 + 0 + 1 = 3.5 of the 5 s gap; 15..16 has no samples.
    check("gap_cpu_share", abs(share - 100 * (12 + 3.5) / 18) < 1e-9, repr(share))
    d = dict(parts)
    # who: the 3.5 s shared by each one's CPU over the whole gap (4.5 s busy): PID 1 2.1 s,
    # udevd 1.8 s, journald 0.5 s, the kernel 4.5 - 4.4 = 0.1 s
    want = {"init.scope": 3.5 * 2.1 / 4.5, "systemd-udevd.service": 3.5 * 1.8 / 4.5,
            "systemd-journald.service": 3.5 * 0.5 / 4.5, bench.KERNEL: 3.5 * 0.1 / 4.5}
    check("gap_cpu_parts", all(abs(d.get(f"after the switch-root: CPU of {k}", -1) - v) < 1e-9
                               for k, v in want.items()), repr(parts))
    g = gaps[0]
    check("gap_cpu_detail", abs(g["explained"] - 3.5) < 1e-9 and
          abs(g["udev_queue"] - 2.0) < 1e-9 and
          g["activating"] == [("systemd-udev-trigger.service", 3.5),
                              ("modprobe@fuse.service", 1.0)], repr(g))
    check("gap_unsampled_unexplained", gaps[1]["explained"] == 0.0 and
          (gaps[1]["from"], gaps[1]["to"]) == (13.0, 14.0), repr(gaps[1]))
    r["blame"] = bench.parse_blame([
        "1min 8.940s dev-disk-by\\x2dpath-pci\\x2d0000:00:01.0\\x2dpart-by\\x2dpartuuid-0f49\u2026",
        "1min 2.670s sys-devices-platform-serial8250-serial8250:0-serial8250:0.2-tty-tt\u2026",
        "     44.820s containerd.service"])
    text = bench.systemd_path({"systemd": {"later": [dict(r, name="x")]}}, "later")
    check("blame_without_devices", "blame): containerd.service 44.82 s." in text, text)
    check("gap_cpu_report", "86 % of it is explained" in text and
          "6.0–11.0 s after init start (after the switch-root; 5.0 s, 3.5 s busy" in text,
          text)


def test_across_switch_root():
    """The sampler from the initrd on (one line every 2 s here): the initrd's cgroups end
    ("-"), udevd's is made again by the root under its name ("!"), a unit starts and ends
    between two samples (only in system.slice's total, sys=). The stretch from the root's
    manager's start to the chain's first job is explained by the CPU in it; an idle
    interval and the end of the path after the last sample stay unexplained.
    Path: init start 2, initrd milestones 3 (udevd), 8 (sysroot), 10 (cryptsetup),
    switch-root 12, the root's manager 14, containerd's start job 30..35 (@16 +5),
    kubelet 40: 38 s."""
    u = 1000000

    def s(t, busy, sys, cgs=""):
        return f"s {t * u} busy={busy} idle=0 q=0 seq=1 sys={sys}" + (" " + cgs if cgs else "")
    full = [(22 + 2 * i, 2500 + 200 * i, f"init.scope={18300000 + 2000000 * i}")
            for i in range(5)]
    samples = [
        s(4, 1000, 2500000, "init.scope=10000000 systemd-udevd.service=2000000 "
          "state-repart.service=500000"),
        s(6, 1200, 4000000, "init.scope=10500000 systemd-udevd.service=3000000 "
          "state-repart.service=1000000"),
        s(8, 1400, 5500000, "init.scope=11000000 systemd-udevd.service=4000000 "
          "state-repart.service=1500000"),
        # repart's cgroup is gone: its last 0.4 s are only in sys
        s(10, 1600, 6900000, "init.scope=11600000 systemd-udevd.service=5000000 "
          "state-repart.service=-"),
        s(12, 1800, 8000000, "init.scope=12500000 systemd-udevd.service=6000000 "
          "initrd-switch-root.service=100000"),
        # the switch-root: the initrd's udevd and initrd-switch-root.service gone (0.2 s
        # after their last lines)
        s(14, 2000, 8200000, "init.scope=14300000 systemd-udevd.service=- "
          "initrd-switch-root.service=-"),
        # the root's udevd, 0.5 s so far; 0.3 s of a unit that came and went (sys only)
        s(16, 2200, 9000000, "init.scope=15300000 systemd-udevd.service=!500000"),
        s(18, 2300, 9000000, "init.scope=16300000"),           # half busy
        s(20, 2300, 9000000),                                     # idle
        *[s(t, b, 9000000, c) for t, b, c in full],               # PID 1 busy to 30
        s(32, 3500, 10800000, "init.scope=26500000 containerd.service=1800000"),
        s(34, 3700, 12600000, "init.scope=26700000 containerd.service=3600000"),
        s(36, 3900, 14400000, "init.scope=26900000 containerd.service=5400000")]
    sm = bench.parse_samples(samples)
    at = {x["t"]: x for x in sm}
    check("switch_samples_parsed", len(sm) == 17 and
          at[14.0]["ended"] == ["systemd-udevd.service", "initrd-switch-root.service"] and
          at[16.0]["ended"] == ["systemd-udevd.service"] and
          abs(at[14.0]["cg"]["systemd-udevd.service"] - 6.0) < 1e-9 and
          abs(at[16.0]["cg"]["systemd-udevd.service"] - 6.5) < 1e-9 and
          abs(at[36.0]["cg"]["systemd-udevd.service"] - 6.5) < 1e-9 and
          abs(at[10.0]["cg"]["state-repart.service"] - 1.5) < 1e-9 and
          at[16.0]["sys"] == 9.0, repr(sm[4:7]))
    chain = [{"unit": "kubelet.service", "at": 26.0, "took": None},
             {"unit": "containerd.service", "at": 16.0, "took": 5.0}]
    r = {"critical_chain": chain, "userspace_start": 14.0, "init_start": 2.0,
         "switch_root": 12.0, "kubelet_started": 40.0, "samples": sm,
         "events": [("udevd", 3.0), ("sysroot", 8.0), ("cryptsetup", 10.0)]}
    share, parts, gaps = bench.chain_attribution(r)
    # initrd 10 + switch-root 2 + containerd 5 + after the switch-root 2 + 1 + 0 + 10 (the
    # busy seconds of 14..30) + the last gap's 35..36 (36..40: no samples) = 31 of 38
    check("switch_share", abs(share - 100 * 31 / 38) < 1e-9, repr(share))
    d = dict(parts)
    a = "after the switch-root: CPU of "
    want = {a + "init.scope": 12.0, a + "systemd-udevd.service": 0.5, a + bench.ENDED: 0.3,
            a + bench.KERNEL: 0.2, "gaps: CPU of containerd.service": 0.9,
            "gaps: CPU of init.scope": 0.1, "containerd.service": 5.0,
            "switch-root → the root's manager": 2.0, "initrd: → sysroot": 5.0}
    check("switch_parts", all(abs(d.get(k, -1) - v) < 1e-9 for k, v in want.items()) and
          not any("rest" in k for k in d), repr(parts))
    after = [g for g in gaps if g["after_switch"]]
    last = gaps[-1]
    check("switch_gaps", len(after) == 1 and (after[0]["from"], after[0]["to"]) == (12.0, 28.0)
          and abs(after[0]["explained"] - 13.0) < 1e-9 and
          after[0]["ended"] == ["systemd-udevd.service"] and
          (last["from"], last["to"]) == (33.0, 38.0) and abs(last["explained"] - 1.0) < 1e-9,
          repr(gaps))
    g = bench.gap_cpu(r, 3.0, 8.0)
    check("switch_initrd_cpu", abs(g["explained"] - 4.0) < 1e-9 and
          abs(g["cpu"]["state-repart.service"] - 1.0) < 1e-9 and
          abs(g["cpu"]["systemd-udevd.service"] - 2.0) < 1e-9 and
          abs(g["cpu"].get(bench.ENDED, 0.0)) < 1e-9, repr(g))
    text = bench.systemd_path({"systemd": {"first": [dict(r, name="x")]}}, "first")
    check("switch_report", "82 % of it is explained: the initrd's steps 10.0 s (journal), the"
          " switch-root 2.0 s, the start jobs on the critical chain 5.0 s" in text and
          "13.0 s of the 16.0 s from the root's manager's start to the chain's first job"
          in text and "1.0 s of the 5.0 s of the other gaps" in text and
          "| switch-root → the root's manager | 2.00 s | init.scope 1.8 s, units that ended"
          in text and "| initrd: → sysroot | 5.00 s | systemd-udevd.service 2.0 s" in text
          and "ended: systemd-udevd.service." in text and
          "samples: 17, from 2.0 s after init start to 34.0 s; 12 after the switch-root"
          in text, text)


def test_sampler_units():
    """The sampler's unit is one file in the initrd (which starts it) and in the root (whose
    manager takes the running unit over at the switch-root): the two copies must not drift,
    and both keep what lets it live through the switch-root."""
    ref = bench.REPO / "image/systemd-ref"
    a = (ref / "initrd/extra/usr/lib/systemd/system/bench-sampler.service").read_text()
    b = (ref / "mkosi.extra/etc/systemd/system/bench-sampler.service").read_text()
    check("sampler_units_same", a == b and "IgnoreOnIsolate=yes" in a and
          "ExecStart=@/usr/lib/bench/cpu-sampler @cpu-sampler /run/" in a)


def main():
    for f in (test_probe_interleaved, test_cvminit_module_waits, test_join_rows,
              test_initrd_config_join, test_growth_configs,
              test_critical_chain, test_attribution, test_gap_cpu, test_across_switch_root,
              test_sampler_units):
        try:
            f()
        except Exception as e:  # a parser that raises fails the test, with the reason
            check(f.__name__, False, f"{type(e).__name__}: {e}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
