"""The node on the network (docs/network.md), with the node test image (`make test-image`)
on QEMU's user network with restrict=on: nothing leaves the host, the guest reaches only
QEMU's DHCP server, its router address, the one server this test runs on 127.0.0.1,
through guestfwd at 10.0.2.100:80, and the join service (helpers.JoinService) at
10.0.2.100:7742. No program of the image resolves a name.

With restrict=on QEMU's DHCP server sends no router and no DNS server (libslirp leaves
both out of a restricted network's replies), so the default route here is IPv6's, from
QEMU's router advertisement (fec0::/64, router fe80::2), the IPv4 lease gives the address,
the subnet and the domain, and resolv.conf has the search domain but no name server (the
hook's handling of name servers is unit-tested: tests/unit/test_dhcp_hook.c).

Boot 1: the NIC's driver is loaded by modalias, dhcpcd (the "network" service) gets the
lease, cvminit sees an address and a default route and only then starts kubelet; the
kubelet stand-in (tests/fixtures/kubelet-standin.c) reports its address, default route,
resolv.conf, hostname, the sysctls and modules Kubernetes networking needs, creates a
wireguard link, and talks to the test's server over TCP.
Boot 2, same disk and vTPM, another DHCP answer (address, IPv6 prefix, DNS server,
domain; the IPv4 subnet stays, since the node joins at 10.0.2.100 before kubelet and a
restricted network has no IPv4 router): the same hostname, the new lease in resolv.conf,
and the same PCR 11 and 15 at `ready` (PCR 15 without the per-boot generation record).
Boot 3, same disk and vTPM, no NIC: the network service says so, is restarted, kubelet is
never started, and power-off still works."""
import hashlib
import re
import secrets
import socket
import threading

import helpers
from vm import TestFailure, note, scaled

STEP = 180
STANDIN = helpers.STANDIN + r"net: "
READY_PCR = r"cvminit: measure: ready: PCR (\d+) (sha256|sha384) ([0-9a-f]+)"
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
           "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")
MODULES = ("br_netfilter", "bridge", "veth", "overlay", "nf_conntrack", "nf_tables",
           "vxlan", "wireguard")


class LineServer:
    """What the guest reaches at 10.0.2.100:80: QEMU connects its guestfwd chardev here
    once at its start; every line the guest sends is kept and answered with the token."""

    def __init__(self):
        self.token = secrets.token_hex(8)
        self.lines = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
            f = conn.makefile("rb")
            for raw in f:
                self.lines.append(raw.decode(errors="replace").strip())
                conn.sendall(f"cvminit-test-server {self.token}\n".encode())
        except OSError:
            pass

    def close(self):
        self.sock.close()


def expected_hostname(machine_id):
    return "cvm-" + hashlib.sha256(b"cvminit hostname:" + machine_id.encode()).hexdigest()[:16]


def ready_pcrs(v):
    """PCR 11 at `ready` and PCR 15 without the per-boot generation record (both banks)."""
    helpers.expect_ready(v)
    v.wait_for(READY_PCR, scaled(STEP), since=0)
    pcrs = {(m.group(1), m.group(2)): m.group(3)
            for _, s in v.find(READY_PCR) for m in [re.search(READY_PCR, s)]
            if m.group(1) != "15"}
    for bank, value in helpers.pcr15_without_generation(v).items():
        pcrs[("15 without the generation", bank)] = value
    return pcrs


def network_up_before_kubelet(v, address4):
    """The driver loaded, the network service ready (a default route and an address),
    the IPv4 lease (dhcpcd's own line), kubelet after the network."""
    v.wait_for(r"cvminit: net: 1 network device\(s\) without a driver, 1 driver match\(es\) "
               r"loaded", scaled(STEP), since=0)
    v.wait_for(r"cvminit: network: started \(pid \d+\): /usr/sbin/dhcpcd ", scaled(STEP),
               since=0)
    m = v.wait_for(r"cvminit: network: ready \(IPv[46] default route on (eth\d), address "
                   r"\S+ after (\d+) ms\)", scaled(STEP), since=0)
    v.chan.wait_for(helpers.SVC + r"network: eth\d: leased " + re.escape(address4)
                    + r" for \d+ seconds", scaled(STEP), since=0)
    v.wait_for(r"cvminit: kubelet: started \(pid \d+\)", scaled(STEP), since=0)
    if v.console.index_of(r"cvminit: network: ready") > v.console.index_of(
            r"cvminit: kubelet: started"):
        raise TestFailure("kubelet started before the network was ready")
    return m.group(1), int(m.group(2))


def standin_sees(v, regex):
    return v.chan.wait_for(STANDIN + regex, scaled(STEP), since=0)


def hostname_checked(v):
    machine_id = helpers.machine_id_checked(v)
    want = expected_hostname(machine_id)
    v.wait_for(r"cvminit: net: hostname " + want + r" \(from the machine ID\)", scaled(STEP),
               since=0)
    standin_sees(v, r"hostname " + want + "$")
    return want


def lease_seen(v, ifname, address4, address6, domain):
    standin_sees(v, rf"address {ifname} {re.escape(address4)}$")
    standin_sees(v, rf"address {ifname} {re.escape(address6)}$")
    standin_sees(v, rf"default route \(IPv6\) via fe80::2 dev {ifname}$")
    standin_sees(v, rf"resolv.conf: search {re.escape(domain)}$")
    bad = [s for _, s in v.chan.find(STANDIN + r"resolv.conf: ")
           if not re.search(r"resolv.conf: (#.*|nameserver \S+|search [\w. -]+)$", s)]
    if bad:
        raise TestFailure(f"unexpected resolv.conf lines: {bad}")


def kubernetes_kernel_settings(v):
    v.wait_for(r"cvminit: sysctl: \d+ setting\(s\) applied from \d+ file\(s\), 0 failed",
               scaled(STEP), since=0)
    for key in SYSCTLS:
        standin_sees(v, re.escape(f"sysctl {key} = 1") + "$")
    for mod in MODULES:
        standin_sees(v, rf"module {mod} loaded$")
    standin_sees(v, r"wireguard link cvmtestwg0 created \(ifindex [1-9]\d*\)$")
    standin_sees(v, r"wireguard link deleted: ok$")


def test_network_lease_dns_hostname_and_pcrs():
    disk = helpers.node_disk("net")
    server = LineServer()
    try:
        nic = {"guestfwd": [("10.0.2.100", 80, server.port)], "domainname": "one.test"}
        with helpers.node_vm("net_boot1", disk, nic=nic) as v:
            helpers.expect_start(v, "OVMF+UKI")
            ifname, ms = network_up_before_kubelet(v, "10.0.2.15")
            host = hostname_checked(v)
            lease_seen(v, ifname, "10.0.2.15", "fec0::5054:ff:fe12:3456", "one.test")
            kubernetes_kernel_settings(v)
            m = standin_sees(v, r"tcp 10.0.2.100:80: answer \"(.*)\"$")
            if m.group(1) != f"cvminit-test-server {server.token}":
                raise TestFailure(f"the server's answer came back as {m.group(1)!r}")
            if f"cvminit-net-probe {host}" not in server.lines:
                raise TestFailure(f"the server got {server.lines}, not the probe from {host}")
            pcrs1 = ready_pcrs(v)
            helpers.power_off_via_button(v)
        note(f"boot 1: {ifname} 10.0.2.15 ready {ms} ms after dhcpcd started; hostname "
             f"{host}; TCP to the test's server answered")
    finally:
        server.close()

    tpm = helpers.keep_tpm(v, disk.parent / "tpm")
    # The same IPv4 subnet: the node joins (kubelet waits for it) at the image's join
    # address 10.0.2.100, which a restricted network reaches only on-link (no IPv4 router).
    nic = {"dhcpstart": "10.0.2.77", "dns": "10.0.2.53",
           "domainname": "two.test", "ipv6-prefix": "fec0:5::", "ipv6-prefixlen": 64}
    with helpers.node_vm("net_boot2", disk, tpm_from=tpm, nic=nic) as v:
        helpers.expect_start(v, "OVMF+UKI")
        ifname, ms = network_up_before_kubelet(v, "10.0.2.77")
        if hostname_checked(v) != host:
            raise TestFailure("the hostname changed between two boots of the same node")
        lease_seen(v, ifname, "10.0.2.77", "fec0:5::5054:ff:fe12:3456", "two.test")
        v.chan.assert_absent(STANDIN + r"(resolv.conf: .*one\.test|address eth\d 10\.0\.2\.15$"
                             r"|address eth\d fec0::)", "the first boot's lease is still there")
        pcrs2 = ready_pcrs(v)
        helpers.power_off_via_button(v)
    if len(pcrs1) < 4 or pcrs1 != pcrs2:
        raise TestFailure(f"PCRs at ready differ between two DHCP answers: {pcrs1} vs {pcrs2}")
    note(f"boot 2: another lease (10.0.2.77, fec0:5::/64, two.test), the same hostname "
         f"and the same {len(pcrs1)} PCR values at ready")

    tpm = helpers.keep_tpm(v, disk.parent / "tpm")
    with helpers.node_vm("net_boot3", disk, tpm_from=tpm, nic=None) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: net: no network device without a driver found \(no NIC\?\)",
                   scaled(STEP), since=0)
        v.wait_for(r"cvminit: containerd: ready", scaled(STEP), since=0)
        v.wait_for(r"cvminit: network: not ready 45 s after its start: the node has no "
                   r"network \(no address with a default route; no DHCP answer or no NIC\?\)",
                   scaled(STEP), since=0)
        v.wait_for(r"cvminit: network: restarting in \d+ s \(restart 1\)$", scaled(STEP),
                   since=0)
        v.wait_for(r"cvminit: network: started \(pid \d+\)", scaled(STEP))
        v.assert_absent(r"cvminit: kubelet: started", "kubelet started without a network")
        v.assert_absent(r"cvminit: measure: ready: PCR", "ready measured without kubelet")
        helpers.power_off_via_button(v)
    note("boot 3 (no NIC): the network service retried with a console line, kubelet never "
         "started, power-off worked")
