"""cvm-measure against a real boot: the PCR 11 value it predicts for the UKI after
systemd-stub must be the one the TPM holds when cvminit starts (OVMF → systemd-stub UKI →
cvminit, swtpm). cvminit prints `cvminit: tpm: PCR 11 sha256 <hex>` before it measures
anything itself, so that line is exactly what the stub extended."""
import re
import subprocess

from vm import REPO, TestFailure, gpt_partitions, note, scaled
import test_boot
import test_image

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
