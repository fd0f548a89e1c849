#!/usr/bin/python3
"""Reads the footer of a fixed VHD (the 512 bytes at its end; Microsoft's "Virtual Hard Disk
Image Format Specification") and checks what Azure requires of an uploaded disk.

    image/vhd-footer.py [--expect-size BYTES] FILE

Checks: the "conectix" cookie, format version 1.0, disk type 2 (fixed), no dynamic header
(data offset all ones), the footer's checksum, the current size a whole number of MiB and
the file exactly that size plus the footer (a fixed VHD is the raw disk, then the footer),
and with --expect-size that size. Prints one line; exit status 1 when a check fails."""
import argparse
import os
import struct
import sys

MIB = 1 << 20


def read_footer(path):
    """{field: value} of the footer at the end of path."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end < 512:
            raise ValueError(f"{path}: {end} bytes, too short for a VHD footer")
        f.seek(end - 512)
        raw = f.read(512)
    # Big-endian fields: cookie, features, version, data offset, timestamp, creator
    # application, creator version, creator host OS, original size, current size, geometry,
    # disk type, checksum, unique id, saved state.
    (cookie, features, version, data_offset, _timestamp, creator, _cver, _host,
     original, current, _geometry, disk_type, checksum, uid, saved) = struct.unpack_from(
        ">8sIIQI4sII QQIII16sB".replace(" ", ""), raw, 0)
    # The checksum: the one's complement of the byte sum of the footer without the field.
    total = sum(raw[:64]) + sum(raw[68:])
    return {"file_size": end, "cookie": cookie, "features": features, "version": version,
            "data_offset": data_offset, "creator": creator, "original_size": original,
            "current_size": current, "disk_type": disk_type, "checksum": checksum,
            "checksum_ok": checksum == (~total & 0xFFFFFFFF), "unique_id": uid.hex(),
            "saved_state": saved}


def problems(f, expect_size=None):
    """The list of what is wrong with footer f (empty when nothing is)."""
    bad = []
    if f["cookie"] != b"conectix":
        bad.append(f"cookie {f['cookie']!r}, not b'conectix'")
    if f["version"] != 0x00010000:
        bad.append(f"format version {f['version']:#010x}, not 1.0")
    if f["disk_type"] != 2:
        bad.append(f"disk type {f['disk_type']}, not 2 (fixed)")
    if f["data_offset"] != 0xFFFFFFFFFFFFFFFF:
        bad.append(f"data offset {f['data_offset']:#x}: a fixed disk has none")
    if not f["checksum_ok"]:
        bad.append(f"checksum {f['checksum']:#010x} does not match the footer")
    if f["current_size"] % MIB:
        bad.append(f"size {f['current_size']} is not a whole number of MiB")
    if f["file_size"] != f["current_size"] + 512:
        bad.append(f"file of {f['file_size']} bytes for a disk of {f['current_size']} "
                   "(expected the disk and the 512-byte footer)")
    if expect_size is not None and f["current_size"] != expect_size:
        bad.append(f"size {f['current_size']}, expected {expect_size}")
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--expect-size", type=int)
    ap.add_argument("file")
    a = ap.parse_args(argv)
    try:
        f = read_footer(a.file)
    except (OSError, ValueError, struct.error) as e:
        print(f"vhd-footer: {e}", file=sys.stderr)
        return 1
    bad = problems(f, a.expect_size)
    if bad:
        print(f"vhd-footer: {a.file}: " + "; ".join(bad), file=sys.stderr)
        return 1
    print(f"vhd-footer: {a.file}: fixed VHD, {f['current_size']} bytes "
          f"({f['current_size'] // MIB} MiB), creator {f['creator'].decode(errors='replace')!r}, "
          "checksum ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
