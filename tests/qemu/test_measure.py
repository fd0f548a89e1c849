"""cvm-measure against a real boot: the PCR 11 value it predicts for the UKI after
systemd-stub must be the one the TPM holds when cvminit starts (OVMF → systemd-stub UKI →
cvminit, swtpm). cvminit prints `cvminit: tpm: PCR 11 sha256 <hex>` before it measures
anything itself, so that line is exactly what the stub extended."""
import base64
import hashlib
import json
import re
import struct
import subprocess

import helpers
from vm import REPO, TestFailure, boot, gpt_partitions, initrd_with, note, scaled
from helpers import CVM_MEASURE, ESP_TYPE, UKI_REFS, _cvm_measure, _references, _standin_files, add_to_uki_cmdline, esp_offset, uki_from_disk  # noqa: F401


def predict(uki, json_out):
    if not CVM_MEASURE.is_file():
        raise TestFailure(f"{CVM_MEASURE} is missing: run 'make build/cvm-measure' "
                          "(make check does)")
    r = subprocess.run([str(CVM_MEASURE), "predict", "--uki", str(uki), "--json", str(json_out)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise TestFailure(f"cvm-measure predict failed ({r.returncode}): {r.stderr.strip()}")
    values = {}
    for m in re.finditer(r"^PCR 11 (\S+) (\S+) ([0-9a-f]+)$", r.stdout, re.M):
        values[(m.group(1), m.group(2))] = m.group(3)
    if ("sha256", "boot") not in values:
        raise TestFailure(f"no 'PCR 11 sha256 boot' line in: {r.stdout}")
    return values, r.stdout


def test_measure_pcr11_matches_boot():
    """cvm-measure predict's PCR 11 after the stub equals PCR 11 read in the booted VM."""
    v = helpers.image_vm("measure_pcr11")
    disk = v.disks[0]["file"]
    uki = uki_from_disk(disk, helpers.WORK_ROOT / "measure_pcr11-disk" / "BOOTX64.EFI")
    if helpers.sha256(uki) != helpers.sha256(helpers.IMAGE_DIR / "cvminit.efi"):
        note("the ESP's UKI differs from build/image/cvminit.efi (rebuilt meanwhile?); "
             "predicting for the ESP's")
    values, out = predict(uki, helpers.WORK_ROOT / "measure_pcr11-disk" / "measurements.json")
    want = values[("sha256", "boot")]
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        m = v.wait_for(r"cvminit: tpm: PCR 11 sha256 ([0-9a-f]{64})",
                       scaled(helpers.STEP_TIMEOUT), since=0)
        got = m.group(1)
    if got != want:
        raise TestFailure(f"PCR 11 sha256 after systemd-stub: predicted {want}, the booted "
                          f"VM has {got}\ncvm-measure said:\n{out}")
    note(f"PCR 11 sha256 after the stub: predicted = booted = {want}")


# --- cvminit's own measurements and its reference checks ------------------------------------

CONF = "/etc/cvminit/cvminit.conf"
REF = "/etc/cvminit/reference"
REFUSED = r"cvminit: \* REFUSING TO BOOT"
NOTHING = r"cvminit: \* nothing was unlocked and nothing was started; action: poweroff"


def _refused_with(v, *words):
    """The box names what drifted (each word appears in the console output after the
    REFUSING line), says nothing was unlocked, no service started, and QEMU powers off."""
    v.wait_for(REFUSED, scaled(helpers.STEP_TIMEOUT), since=0)
    v.wait_for(NOTHING, scaled(helpers.STEP_TIMEOUT), since=0)
    # A power-off, said by the kernel or by QEMU's SHUTDOWN event: not a reset, a panic
    # or a timeout.
    helpers.expect_poweroff(v, scaled(helpers.POWEROFF_BOUND))
    parts = [s.split("cvminit: *", 1)[1].strip() for _, s in v.lines if "cvminit: *" in s]
    box = "\n".join(parts)
    # The box wraps at spaces, and cuts words longer than a line: look in both joins.
    for w in words:
        if w not in " ".join(parts) and w not in "".join(parts):
            raise TestFailure(f"the refusal box does not name {w!r}:\n{box}")
    v.assert_absent(r"cvminit: \S+: started \(pid", "a service started despite the refusal")
    v.assert_absent(r"cvminit: measure: PCR 11 \+= leave-initrd",
                    "leave-initrd was measured despite the refusal")
    return box


def test_measure_refuses_without_tpm():
    """No TPM and no TDX RTMR: cvminit refuses (measure=required is the default)."""
    with boot(ovmf=False, tpm=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        _refused_with(v, "no TPM", "/dev/tpmrm0", "TDX")


def test_measure_optional_boots_unmeasured():
    """`set measure=optional` in the initrd's config: the same TPM-less VM boots, saying
    it is unmeasured; the key is refused on the command line (only the measured config
    may weaken measuring)."""
    with boot(initrd=initrd_with({CONF: "set measure=optional\n"}), ovmf=False,
              tpm=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit: measure: measure=optional .* booting UNMEASURED",
                   scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_ready(v)
        helpers.power_off_via_button(v)
    with boot("cvminit.measure=optional", ovmf=False, tpm=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit\.measure cannot be given on the kernel command line",
                   scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)


def test_measure_config_drift_refused():
    """The initrd's config differs from the reference the initrd carries: refused with
    the expected and the actual sha256, before any service starts."""
    text = "service a\n\texec /init --version\n"
    want = "0" * 64
    got = hashlib.sha256(text.encode()).hexdigest()
    with boot(initrd=initrd_with({CONF: text, REF: f"config sha256:{want}\n"}),
              ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        _refused_with(v, "DRIFT", "config file", f"sha256:{want}", f"sha256:{got}")
        # Measured before compared: the record of what drifted is in PCR 15's log.
        v.wait_for(r"cvminit: measure: PCR 15 \+= cvminit:config", 1, since=0)


def test_measure_root_drift_refused():
    """The reference names a verified root but the command line has no roothash=: refused
    naming the expected root."""
    h = "ab" * 32
    ident = f"verity:{h}:abababab-abab-abab-abab-abababababab:abababab-abab-abab-abab-abababababab:erofs"
    with boot(initrd=initrd_with({REF: f"root {ident}\n"}), ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        _refused_with(v, "DRIFT", "verified root", h[:40], "no roothash=")


def test_measure_bad_reference_refused():
    """A reference file that does not parse (an unfilled image slot): refused."""
    with boot(initrd=initrd_with({REF: "unfilled-cvminit-reference-slot\n\n\n"}),
              ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        _refused_with(v, "bad reference values", "/etc/cvminit/reference:1", "unknown key")


def _uki_variant(name, cmdline_extra, keep_references):
    """A copy of the node test disk with add_to_uki_cmdline applied."""
    disk = helpers.node_disk(name)
    return disk, add_to_uki_cmdline(disk, cmdline_extra, keep_references)


def test_measure_cmdline_drift_refused():
    """The node image's UKI with one word added to its embedded command line, its
    references left as built: cvminit measures the command line, finds it differs from
    the reference and refuses naming both, before the root is opened."""
    extra = "cvminit.log_level=debug"
    disk, cmdline = _uki_variant("measure_cmdline_drift", extra, keep_references=True)
    v = helpers.node_vm("measure_cmdline_drift", disk)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        box = _refused_with(v, "DRIFT", "kernel command line", extra)
        v.assert_absent(r"cvminit: root: ", "the root was looked at despite the refusal")
    note("refusal as printed:\n" + box)


STATE_TYPE = "4d21b016-b534-45c2-a9fb-5c16e091fd2d"
BANKS = ("sha256", "sha384")


# --- PCR 4: the firmware's records of the UKI and of the kernel the stub loads -------------

EV_NAMES = {0x3: "EV_NO_ACTION", 0x4: "EV_SEPARATOR", 0x80000007: "EV_EFI_ACTION",
            0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION"}
ALG_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}


def firmware_events(log):
    """[(pcr, event type name or hex, {bank: digest bytes}, event data)] of each event a
    TCG2 (crypto-agile) firmware log records after its Spec ID header, in log order.
    Digest sizes come from the header, as the format says."""
    sizes = {}
    hsize = struct.unpack_from("<I", log, 28)[0]
    spec = log[32:32 + hsize]
    if not spec.startswith(b"Spec ID Event03"):
        raise TestFailure("firmware log: not crypto-agile (no Spec ID Event03 header)")
    n = struct.unpack_from("<I", spec, 24)[0]
    for i in range(n):
        alg, size = struct.unpack_from("<HH", spec, 28 + 4 * i)
        sizes[alg] = size
    out, p = [], 32 + hsize
    while p + 12 <= len(log):
        pcr, etype, count = struct.unpack_from("<III", log, p)
        if etype == 0 and count == 0:
            break  # the unused rest of the log area
        p += 12
        digests = {}
        for _ in range(count):
            alg = struct.unpack_from("<H", log, p)[0]
            digests[ALG_NAMES.get(alg, hex(alg))] = log[p + 2:p + 2 + sizes[alg]]
            p += 2 + sizes[alg]
        esize = struct.unpack_from("<I", log, p)[0]
        out.append((pcr, EV_NAMES.get(etype, hex(etype)), digests, log[p + 4:p + 4 + esize]))
        p += 4 + esize
    return out


def failed_boot_options(v):
    """How many boot options OVMF failed to load before it started one, from what its
    boot manager prints (q35's empty DVD drive comes first without -nodefaults)."""
    n = 0
    for _, s in v.lines:
        if re.search(r"BdsDxe: starting Boot[0-9A-F]{4}", s):
            return n
        n += bool(re.search(r"BdsDxe: failed to load Boot[0-9A-F]{4}", s))
    raise TestFailure("no 'BdsDxe: starting Boot####' line on the console")


def check_pcr4(fw_log, predict_out, predicted, booted_sha256, failed):
    """The firmware log's PCR 4 events are, one by one, the events cvm-measure predicts
    (the action strings and the separator hashed here, the two Authenticode hashes from
    cvm-measure's output); replaying them gives the predicted PCR 4 in each bank, and the
    sha256 value is the one cvminit read at start. Returns a summary."""
    events = [e for e in firmware_events(fw_log) if e[0] == 4 and e[1] != "EV_NO_ACTION"]
    auth = {(m.group(1), m.group(2)): bytes.fromhex(m.group(3)) for m in re.finditer(
        r"^authenticode (\S+) (\S+) ([0-9a-f]+)$", predict_out, re.M)}
    listing = "\n".join(f"  {t} sha256 {d.get('sha256', b'').hex()}"
                         + (f" {data.decode()!r}" if t == "EV_EFI_ACTION" else "")
                         for _, t, d, data in events)
    calling = ("EV_EFI_ACTION", lambda b: hashlib.new(
        b, b"Calling EFI Application from Boot Option").digest())
    returning = ("EV_EFI_ACTION", lambda b: hashlib.new(
        b, b"Returning from EFI Application from Boot Option").digest())
    want = ([calling, ("EV_SEPARATOR", lambda b: hashlib.new(b, bytes(4)).digest())]
            + [returning, calling] * failed
            + [("EV_EFI_BOOT_SERVICES_APPLICATION", lambda b: auth[("uki", b)]),
               ("EV_EFI_BOOT_SERVICES_APPLICATION", lambda b: auth[(".linux", b)])])
    if len(events) != len(want):
        raise TestFailure(f"the firmware log has {len(events)} PCR 4 events, cvm-measure "
                          f"predicts {len(want)}:\n{listing}")
    for i, ((_, etype, digests, _), (wtype, wdigest)) in enumerate(zip(events, want)):
        for bank in BANKS:
            if etype != wtype or digests.get(bank) != wdigest(bank):
                raise TestFailure(f"PCR 4 event {i} of the firmware log is {etype} "
                                  f"{digests.get(bank, b'').hex()} ({bank}), predicted "
                                  f"{wtype} {wdigest(bank).hex()}:\n{listing}")
    for bank in BANKS:
        pcr = bytes(hashlib.new(bank).digest_size)
        for _, _, digests, _ in events:
            pcr = hashlib.new(bank, pcr + digests[bank]).digest()
        if pcr.hex() != predicted[bank]:
            raise TestFailure(f"PCR 4 {bank}: the firmware log replays to {pcr.hex()}, "
                              f"measurements.json has {predicted[bank]}")
    if booted_sha256 != predicted["sha256"]:
        raise TestFailure(f"PCR 4 sha256: cvminit read {booted_sha256} at start, "
                          f"measurements.json has {predicted['sha256']}")
    return (f"PCR 4: the firmware log's {len(events)} events ({failed} failed boot "
            f"option(s) first) are the predicted ones:\n{listing}")


def test_measure_node_pcrs_match_prediction():
    """The node image boots (OVMF + UKI + swtpm, first boot: the state volume is made and
    sealed). PCR 11 and 15 as cvminit reads them at `ready`, in the sha256 and sha384
    banks, equal `cvm-measure predict` for the UKI, the state partition's LUKS2 header and
    the node's volume-key record pinned from its event log (measurements.json; without
    that record predict leaves PCR 15 out, and its PCR 15 sealing value is the token's);
    `cvm-measure verify` replays the guest's event log and the firmware's against those
    values and passes, says it took the volume-key record as logged, and fails naming
    PCR 15 when one value is changed. PCR 4 in measurements.json (both banks) is what the
    firmware log's PCR 4 events replay to, event by event the predicted ones, and the
    sha256 value cvminit read at start."""
    name = "measure_node"
    disk = helpers.node_disk(name)
    work = disk.parent
    uki = uki_from_disk(disk, work / "BOOTX64.EFI")
    got = {}
    v = helpers.node_vm(name, disk)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        # Before cvminit extends anything; nothing after the firmware touches PCR 4.
        pcr4_start = v.wait_for(r"cvminit: tpm: PCR 4 sha256 ([0-9a-f]{64})$",
                                scaled(300), since=0).group(1)
        for pcr in (11, 15):
            for bank in BANKS:
                m = v.wait_for(rf"cvminit: measure: ready: PCR {pcr} {bank} ([0-9a-f]+)$",
                               scaled(300), since=0)
                got[(pcr, bank)] = m.group(1)
        v.chan.wait_for(r"kubelet-standin: end /run/log/cvminit/firmware.log \d+$",
                        scaled(120), since=0)
        files = _standin_files(v)
        failed = failed_boot_options(v)
        helpers.power_off_via_button(v)
    # PCR 4 sha256 joins the comparisons below and verify's replay of the firmware log.
    got[(4, "sha256")] = pcr4_start

    # The node's own state identity comes from its LUKS2 header, read on the host.
    off, size = gpt_partitions(disk)[STATE_TYPE]
    part = work / "state.img"
    with open(disk, "rb") as src, open(part, "wb") as dst:
        src.seek(off)
        dst.write(src.read(16 << 20))  # the header and keyslot area are in the first 16 MiB
    # PCR 15 at ready ends with the node's cvminit:volume-key record (an HMAC keyed with
    # its volume key) and this boot's cvminit:generation: predict pins both from the
    # node's event log.
    log = work / "measure.log"
    log.write_bytes(files["/run/log/cvminit/measure.log"])
    predicted, pcr4, pcr4_out = {}, {}, ""
    for bank in BANKS:
        out = work / f"measurements-{bank}.json"
        r = _cvm_measure("predict", "--uki", uki, "--state-from", part, "--bank", bank,
                         "--failed-boot-options", failed, "--json", out)
        if "expected" in json.loads(out.read_text())["15"]:
            raise TestFailure(f"{out} has PCR 15's value without the node's volume-key record")
        if "PCR 15's value left out" not in r.stderr:
            raise TestFailure(f"predict without --node-log gave no note:\n{r.stderr}")
        if bank == "sha256":
            sealing = re.search(r"^PCR 15 sha256 sealing ([0-9a-f]+)$", r.stdout, re.M)
            dump = subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata",
                                   str(part)], stdout=subprocess.PIPE, text=True, check=True)
            token = json.loads(dump.stdout)["tokens"]["0"]
            if not sealing or sealing.group(1) != token["cvminit-pcr-values"]["15"]:
                raise TestFailure(f"predict's PCR 15 sealing value "
                                  f"{sealing.group(1) if sealing else '(none)'} is not the "
                                  f"token's {token['cvminit-pcr-values']['15']}")
            note(f"PCR 15 sha256 at sealing: predicted = token = {sealing.group(1)}")
        pcr4_out = _cvm_measure("predict", "--uki", uki, "--state-from", part, "--bank",
                                bank, "--failed-boot-options", failed, "--node-log", log,
                                "--json", out).stdout
        j = json.loads(out.read_text())
        pcr4[bank] = predicted[(4, bank)] = j["4"]["expected"]
        if j["4"]["warnOnly"]:
            raise TestFailure(f"{out}: PCR 4 is warnOnly")
        for pcr in (11, 15):
            predicted[(pcr, bank)] = j[str(pcr)]["expected"]
            if j[str(pcr)]["warnOnly"]:
                raise TestFailure(f"{out}: PCR {pcr} is warnOnly although the state was given")
    bad = [f"PCR {p} {b}: predicted {predicted[(p, b)]}, booted {got[(p, b)]}"
           for (p, b) in sorted(got) if predicted[(p, b)] != got[(p, b)]]
    if bad:
        raise TestFailure("prediction differs from the boot:\n" + "\n".join(bad))
    note("measurements.json (sha256): " + (work / "measurements-sha256.json").read_text().strip())
    for (p, b) in sorted(got):
        note(f"PCR {p} {b}: predicted = booted = {got[(p, b)]}")

    # Replay the guest's logs against the values cvminit read.
    fw = work / "firmware.log"
    fw.write_bytes(files["/run/log/cvminit/firmware.log"])
    note(check_pcr4(files["/run/log/cvminit/firmware.log"], pcr4_out, pcr4, pcr4_start,
                    failed))
    pcrs = work / "pcrs.txt"
    pcrs.write_text("".join(f"{p}: {b}:{h}\n" for (p, b), h in sorted(got.items())))
    r = _cvm_measure("verify", "--log", log, "--firmware-log", fw, "--uki", uki,
                     "--pcrs", pcrs)
    note("cvm-measure verify: " + r.stdout.strip().splitlines()[-1])
    if not re.search(r'"cvminit:volume-key:\S+" \(event type volume-key\) is an HMAC',
                     r.stdout):
        raise TestFailure(f"verify did not name the volume-key record it took as logged:\n"
                          f"{r.stdout}")
    if "PCR 4 images: the 2 in" not in r.stdout:
        raise TestFailure(f"verify did not find the UKI's and the kernel's image hashes in "
                          f"the firmware log's PCR 4:\n{r.stdout}")
    # A UKI that differs only in its COFF header's TimeDateStamp (hashed by Authenticode,
    # in no section, so PCR 11 stays the same): verify names the firmware's UKI event as
    # not this UKI's.
    other = work / "BOOTX64-other.EFI"
    data = bytearray(uki.read_bytes())
    data[struct.unpack_from("<I", data, 0x3c)[0] + 8] ^= 1
    other.write_bytes(bytes(data))
    r = _cvm_measure("verify", "--firmware-log", fw, "--uki", other, "--pcrs", pcrs,
                     "--pcr", "4", check=False)
    if (r.returncode != 1 or "PCR 4 images: MISMATCH" not in r.stdout
            or "s uki:" not in r.stdout or "PCR 11 systemd-stub events: the" not in r.stdout):
        raise TestFailure(f"verify with a UKI whose DOS stub differs: exit {r.returncode}, "
                          f"expected 1 naming the UKI's PCR 4 event:\n{r.stdout}{r.stderr}")
    wrong = dict(got)
    wrong[(15, "sha256")] = "00" * 32
    pcrs.write_text("".join(f"{p}: {b}:{h}\n" for (p, b), h in sorted(wrong.items())))
    r = _cvm_measure("verify", "--log", log, "--firmware-log", fw, "--uki", uki,
                     "--pcrs", pcrs, check=False)
    # The line that names the mismatch, not "PCR 15 sha256: match" of the other bank.
    if r.returncode != 1 or not re.search(r"^PCR 15 sha256: MISMATCH$", r.stdout, re.M) \
            or not re.search(r"^PCR 15 sha384: match$", r.stdout, re.M):
        raise TestFailure(f"verify against a wrong PCR 15: exit {r.returncode}, expected 1 "
                          f"naming PCR 15:\n{r.stdout}{r.stderr}")
