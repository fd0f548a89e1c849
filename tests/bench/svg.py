"""The bench's picture: one boot timeline per image (its median run), side by side on one
time axis (wall seconds from QEMU's start), in plain SVG.

Each bar: the firmware and systemd-stub (QEMU start → kernel start, host clock), then the
guest's phases on the guest clock: kernel → init start → root mounted → state mounted →
containerd exec → containerd ready → kubelet started, with cvminit's join (attested by
cvm-join; the reference has none) cut out of the last stretch. Ticks above a bar are the init's own
finer stages (cvminit's timeline, systemd's journal)."""

from xml.sax.saxutils import escape

PHASES = [
    # key, label, colour
    ("firmware", "OVMF + systemd-stub", "#b0b0b0"),
    ("kernel", "kernel", "#7aa6d6"),
    ("root", "init → root mounted", "#e6a045"),
    ("state", "root → state mounted", "#d9684a"),
    ("svc", "state → containerd exec", "#9d6fb8"),
    ("containerd", "containerd starting", "#6fb873"),
    ("kubelet", "containerd ready → kubelet", "#3d8a8a"),
    ("join", "join (cvminit)", "#c9b037"),
]
COLOUR = {k: c for k, _, c in PHASES}

W = 1200
LEFT = 200
RIGHT = 150
BAR_H = 22
ROW_H = 135


def median_run(runs):
    if not runs:
        return None
    s = sorted(runs, key=lambda r: r["kubelet_started_wall"])
    return s[(len(s) - 1) // 2]


def segments(r):
    k0 = r["kernel_start_wall"]
    pts = [("firmware", 0.0, k0), ("kernel", k0, k0 + r["init_start"]),
           ("root", k0 + r["init_start"], k0 + r["root"]),
           ("state", k0 + r["root"], k0 + r["state"])]
    cs = r.get("containerd_started") or r["containerd_ready"]
    pts += [("svc", k0 + r["state"], k0 + cs),
            ("containerd", k0 + cs, k0 + r["containerd_ready"]),
            ("kubelet", k0 + r["containerd_ready"], k0 + r["kubelet_started"])]
    if r.get("join_started") and r.get("join_ready"):
        # the join's part of the last stretch: from its start (or containerd ready) on
        a = max(r["containerd_ready"], r["join_started"])
        b = min(max(a, r["join_ready"]), r["kubelet_started"])
        pts[-1:] = [("kubelet", k0 + r["containerd_ready"], k0 + a), ("join", k0 + a, k0 + b),
                    ("kubelet", k0 + b, k0 + r["kubelet_started"])]
    return [(k, a, b) for k, a, b in pts if b > a]


def timeline(results, meta):
    rows = []
    for kind, title in (("later", "later boot"), ("first", "first boot")):
        for img in ("cvminit-before", "cvminit", "systemd"):
            r = median_run(results.get(img, {}).get(kind, []))
            if r:
                rows.append((f"{img}", title, r))
    if not rows:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    tmax = max(r["kernel_start_wall"] + r["kubelet_started"] for _, _, r in rows)
    tmax = max(5, (int(tmax / 5) + 1) * 5)
    scale = (W - LEFT - RIGHT) / tmax
    top = 80
    H = top + ROW_H * len(rows) + 120
    x = lambda t: LEFT + t * scale  # noqa: E731
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">Boot to kubelet: cvminit '
         f'and a systemd node, median runs (QEMU TCG, OVMF, swtpm)</text>',
         f'<text x="{LEFT}" y="40" fill="#555">{escape(meta.get("date", ""))}; '
         f'{escape(str(meta.get("n")))} later + {escape(str(meta.get("first")))} first boot(s) '
         f'per image; wall seconds from QEMU start (guest phases on the guest clock)</text>']
    # axis grid
    step = next(st for lim, st in ((40, 5), (100, 10), (250, 25), (10**9, 50)) if tmax <= lim)
    axis_y = top + ROW_H * len(rows) + 10
    for t in range(0, tmax + 1, step):
        o.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{axis_y}" '
                 f'stroke="#e4e4e4"/>')
        o.append(f'<text x="{x(t):.1f}" y="{axis_y + 14}" text-anchor="middle" '
                 f'fill="#555">{t} s</text>')
    for i, (img, title, r) in enumerate(rows):
        y = top + i * ROW_H + 115
        o.append(f'<text x="{LEFT - 10}" y="{y + 10}" text-anchor="end" font-size="13" '
                 f'font-weight="bold">{escape(img)}</text>')
        o.append(f'<text x="{LEFT - 10}" y="{y + 24}" text-anchor="end" fill="#555">'
                 f'{escape(title)}</text>')
        for key, a, b in segments(r):
            o.append(f'<rect x="{x(a):.1f}" y="{y}" width="{max((b - a) * scale, 0.5):.1f}" '
                     f'height="{BAR_H}" fill="{COLOUR[key]}"><title>{escape(key)}: '
                     f'{b - a:.2f} s</title></rect>')
            if (b - a) * scale > 34:
                o.append(f'<text x="{(x(a) + x(b)) / 2:.1f}" y="{y + 15}" text-anchor="middle" '
                         f'fill="white" font-weight="bold">{b - a:.1f}</text>')
        # the init's own stages: ticks, with labels stacked in levels so none overlap
        k0 = r["kernel_start_wall"]
        ends = []  # right end (px) of the last label on each level
        for name, at in r.get("events", []):
            px = x(k0 + at)
            width = 5.2 * len(name) + 4
            level = next((i for i, e in enumerate(ends) if e < px), len(ends))
            if level == len(ends):
                ends.append(0)
            ends[level] = px + width
            ly = y - 6 - level * 10
            o.append(f'<line x1="{px:.1f}" y1="{y}" x2="{px:.1f}" y2="{ly:.0f}" '
                     f'stroke="#888" stroke-width="0.6"/>')
            o.append(f'<text x="{px + 1.5:.1f}" y="{ly - 1:.0f}" font-size="9" fill="#333">'
                     f'{escape(name)}</text>')
        end = k0 + r["kubelet_started"]
        cpu, what = r.get("init_cpu"), "init CPU"
        if cpu is None:
            cpu, what = r.get("pid1_cpu"), "PID 1 CPU"
        o.append(f'<text x="{x(end) + 6:.1f}" y="{y + 10}" font-weight="bold">'
                 f'{r["kubelet_started_wall"]:.1f} s</text>')
        if cpu is not None:
            o.append(f'<text x="{x(end) + 6:.1f}" y="{y + 24}" fill="#555">{what} '
                     f'{cpu:.2f} s</text>')
    # legend
    ly = axis_y + 40
    lx = LEFT
    for key, label, colour in PHASES:
        o.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>')
        o.append(f'<text x="{lx + 16}" y="{ly + 10}">{escape(label)}</text>')
        lx += 30 + 6.6 * len(label)
        if lx > W - 200:
            lx, ly = LEFT, ly + 20
    o.append(f'<text x="{LEFT}" y="{H - 12}" fill="#555">Ticks: the init\'s own stages '
             f'(cvminit: /run/cvminit/timeline; systemd: its journal). Number at the right: '
             f'wall time from QEMU start to kubelet\'s exec.</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"
