"""cvm-measure against a real boot: the PCR 11 value it predicts for the UKI after
systemd-stub must be the one the TPM holds when cvminit starts (OVMF → systemd-stub UKI →
cvminit, swtpm). cvminit prints `cvminit: tpm: PCR 11 sha256 <hex>` before it measures
anything itself, so that line is exactly what the stub extended."""
import hashlib
import re
import subprocess

from vm import REPO, TestFailure, boot, gpt_partitions, initrd_with, note, scaled
import test_boot
import test_image
import test_node

CVM_MEASURE = REPO / "build" / "cvm-measure"
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"


def esp_offset(disk):
    """Byte offset of the ESP in a GPT disk image."""
    parts = gpt_partitions(disk)
    if ESP_TYPE not in parts:
        raise TestFailure(f"{disk}: no ESP partition")
    return parts[ESP_TYPE][0]


def uki_from_disk(disk, out):
    """The UKI the firmware will boot: \\EFI\\BOOT\\BOOTX64.EFI from the disk's ESP, so the
    prediction is for the very bytes booted even if build/image is rebuilt meanwhile."""
    r = subprocess.run(["mcopy", "-n", "-o", "-i", f"{disk}@@{esp_offset(disk)}",
                        "::/EFI/BOOT/BOOTX64.EFI", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"mcopy of BOOTX64.EFI from the ESP failed: {r.stdout.strip()}")
    return out


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
    v = test_image.image_vm("measure_pcr11")
    disk = v.disks[0]["file"]
    uki = uki_from_disk(disk, test_image.WORK_ROOT / "measure_pcr11-disk" / "BOOTX64.EFI")
    if test_image.sha256(uki) != test_image.sha256(test_image.IMAGE_DIR / "cvminit.efi"):
        note("the ESP's UKI differs from build/image/cvminit.efi (rebuilt meanwhile?); "
             "predicting for the ESP's")
    values, out = predict(uki, test_image.WORK_ROOT / "measure_pcr11-disk" / "measurements.json")
    want = values[("sha256", "boot")]
    with v:
        test_boot.expect_start(v, "OVMF+UKI")
        m = v.wait_for(r"cvminit: tpm: PCR 11 sha256 ([0-9a-f]{64})",
                       scaled(test_boot.STEP_TIMEOUT), since=0)
        got = m.group(1)
    if got != want:
        raise TestFailure(f"PCR 11 sha256 after systemd-stub: predicted {want}, the booted "
                          f"VM has {got}\ncvm-measure said:\n{out}")
    note(f"PCR 11 sha256 after the stub: predicted = booted = {want}")


# --- cvminit's own measurements and its reference checks ------------------------------------

UKI_REFS = REPO / "image" / "uki-refs.py"
CONF = "/etc/cvminit/cvminit.conf"
REF = "/etc/cvminit/reference"
REFUSED = r"cvminit: \* REFUSING TO BOOT"
NOTHING = r"cvminit: \* nothing was unlocked and nothing was started; action: poweroff"


def _refused_with(v, *words):
    """The box names what drifted (each word appears in the console output after the
    REFUSING line), says nothing was unlocked, no service started, and QEMU powers off."""
    v.wait_for(REFUSED, scaled(test_boot.STEP_TIMEOUT), since=0)
    v.wait_for(NOTHING, scaled(test_boot.STEP_TIMEOUT), since=0)
    v.wait_exit(scaled(test_boot.POWEROFF_BOUND))
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
        test_boot.expect_start(v, "SeaBIOS")
        _refused_with(v, "no TPM", "/dev/tpmrm0", "TDX")


def test_measure_optional_boots_unmeasured():
    """`set measure=optional` in the initrd's config: the same TPM-less VM boots, saying
    it is unmeasured; the key is refused on the command line (only the measured config
    may weaken measuring)."""
    with boot(initrd=initrd_with({CONF: "set measure=optional\n"}), ovmf=False,
              tpm=False) as v:
        test_boot.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit: measure: measure=optional .* booting UNMEASURED",
                   scaled(test_boot.STEP_TIMEOUT), since=0)
        test_boot.expect_ready(v)
        test_boot.power_off_via_button(v)
    with boot("cvminit.measure=optional", ovmf=False, tpm=False) as v:
        test_boot.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit\.measure cannot be given on the kernel command line",
                   scaled(test_boot.STEP_TIMEOUT), since=0)
        test_boot.expect_refusal_and_poweroff(v)


def test_measure_config_drift_refused():
    """The initrd's config differs from the reference the initrd carries: refused with
    the expected and the actual sha256, before any service starts."""
    text = "service a\n\texec /init --version\n"
    want = "0" * 64
    got = hashlib.sha256(text.encode()).hexdigest()
    with boot(initrd=initrd_with({CONF: text, REF: f"config sha256:{want}\n"}),
              ovmf=False) as v:
        test_boot.expect_start(v, "SeaBIOS")
        _refused_with(v, "DRIFT", "config file", f"sha256:{want}", f"sha256:{got}")
        # Measured before compared: the record of what drifted is in PCR 15's log.
        v.wait_for(r"cvminit: measure: PCR 15 \+= cvminit:config", 1, since=0)


def test_measure_root_drift_refused():
    """The reference names a verified root but the command line has no roothash=: refused
    naming the expected root."""
    h = "ab" * 32
    ident = f"verity:{h}:abababab-abab-abab-abab-abababababab:abababab-abab-abab-abab-abababababab:erofs"
    with boot(initrd=initrd_with({REF: f"root {ident}\n"}), ovmf=False) as v:
        test_boot.expect_start(v, "SeaBIOS")
        _refused_with(v, "DRIFT", "verified root", h[:40], "no roothash=")


def test_measure_bad_reference_refused():
    """A reference file that does not parse (an unfilled image slot): refused."""
    with boot(initrd=initrd_with({REF: "unfilled-cvminit-reference-slot\n\n\n"}),
              ovmf=False) as v:
        test_boot.expect_start(v, "SeaBIOS")
        _refused_with(v, "bad reference values", "/etc/cvminit/reference:1", "unknown key")


def _uki_variant(name, cmdline_extra, keep_references):
    """A copy of the node test disk whose UKI has extra words on its command line; its
    references either left as built (drift) or rewritten to match (a consistent image
    that measures differently)."""
    disk = test_node.node_disk(name)
    work = disk.parent
    uki = uki_from_disk(disk, work / "BOOTX64.EFI")
    cmdline = re.search(r"^cmdline (.*)$", _references(uki), re.M).group(1)
    args = ["python3", str(UKI_REFS), "--uki", str(uki), "--disk", str(disk),
            "--cmdline", f"{cmdline} {cmdline_extra}"]
    if keep_references:
        args.append("--keep-references")
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"uki-refs.py failed: {r.stdout}")
    return disk, cmdline


def _references(uki):
    data = open(uki, "rb").read()
    i = data.find(b"# cvminit reference values")
    if i < 0:
        raise TestFailure(f"{uki}: no filled-in reference values in the UKI's initrd")
    return data[i:data.index(b"\n\n", i)].decode()


def test_measure_cmdline_drift_refused():
    """The node image's UKI with one word added to its embedded command line, its
    references left as built: cvminit measures the command line, finds it differs from
    the reference and refuses naming both, before the root is opened."""
    extra = "cvminit.log_level=debug"
    disk, cmdline = _uki_variant("measure_cmdline_drift", extra, keep_references=True)
    v = test_node.node_vm("measure_cmdline_drift", disk)
    with v:
        test_boot.expect_start(v, "OVMF+UKI")
        box = _refused_with(v, "DRIFT", "kernel command line", extra)
        v.assert_absent(r"cvminit: root: ", "the root was looked at despite the refusal")
    note("refusal as printed:\n" + box)
