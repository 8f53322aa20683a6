#!/usr/bin/env python3
"""Independent decoder that produces sif_expected.json, the conformance table.

It decodes every .sif file of the reference corpus (../shared/fixtures/sif) with
Python's `struct`, from the layout of the reference implementation
(github.com/sylabs/sif/v2, pkg/sif/sif.go, descriptor.go, arch.go: Go's
encoding/binary, little-endian, no padding), without any of hybrun's code, and
writes the facts `hybrun image inspect --json` must report for each file.

Usage: python3 sif/tests/data/sif_expected.py [FIXTURE_DIR] > sif/tests/data/sif_expected.json
"""
import datetime
import json
import os
import struct
import sys
import uuid

HEADER = struct.Struct("<32s10s3s3s16s8q")           # 128 bytes
DESCRIPTOR = struct.Struct("<i?III7q128s384s")        # 585 bytes
GROUP_MASK = 0xF0000000
GO_ZERO_TIME = -62135596800                           # time.Time{}.Unix()

DATA_TYPES = {
    0x4001: "Def.FILE", 0x4002: "Env.Vars", 0x4003: "JSON.Labels", 0x4004: "FS",
    0x4005: "Signature", 0x4006: "JSON.Generic", 0x4007: "Generic/Raw",
    0x4008: "Cryptographic Message", 0x4009: "SBOM", 0x400A: "OCI.RootIndex",
    0x400B: "OCI.Blob",
}
FS_TYPES = {1: "Squashfs", 2: "Ext3", 3: "Archive", 4: "Raw", 5: "Encrypted squashfs"}
PART_TYPES = {1: "System", 2: "*System", 3: "Data", 4: "Overlay"}
HASH_TYPES = {1: "SHA-256", 2: "SHA-384", 3: "SHA-512", 4: "BLAKE2s-256", 5: "BLAKE2b-256"}
FORMAT_TYPES = {1: "OpenPGP", 2: "PEM"}
MESSAGE_TYPES = {0x100: "Clear Signature", 0x200: "RSA-OAEP"}
SBOM_FORMATS = {1: "cyclonedx-json", 2: "cyclonedx-xml", 3: "github-json", 4: "spdx-json",
                5: "spdx-rdf", 6: "spdx-tag-value", 7: "spdx-yaml", 8: "syft-json"}
ARCHES = {b"01\0": "386", b"02\0": "amd64", b"03\0": "arm", b"04\0": "arm64",
          b"05\0": "ppc64", b"06\0": "ppc64le", b"07\0": "mips", b"08\0": "mipsle",
          b"09\0": "mips64", b"10\0": "mips64le", b"11\0": "s390x", b"12\0": "riscv64"}


def text(raw):
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def utc(seconds):
    if seconds == GO_ZERO_TIME:
        return None
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def metadata(code, extra):
    if code == 0x4004:
        fs, part, arch = struct.unpack_from("<ii3s", extra)
        return {"fs_type": FS_TYPES.get(fs, "Unknown"),
                "partition_type": PART_TYPES.get(part, "Unknown"),
                "arch": ARCHES.get(arch, "unknown")}
    if code == 0x4005:
        (hash_type,) = struct.unpack_from("<i", extra)
        fingerprint = extra[4:24]
        return {"hash_type": HASH_TYPES.get(hash_type, "Unknown"),
                "entity": None if fingerprint == bytes(20) else fingerprint.hex().upper()}
    if code == 0x4008:
        fmt, msg = struct.unpack_from("<ii", extra)
        return {"format_type": FORMAT_TYPES.get(fmt, "Unknown"),
                "message_type": MESSAGE_TYPES.get(msg, "Unknown")}
    if code == 0x4009:
        (fmt,) = struct.unpack_from("<i", extra)
        return {"sbom_format": SBOM_FORMATS.get(fmt, "unknown")}
    if code in (0x400A, 0x400B):
        return {"digest": extra.split(b"\0", 1)[0].decode("utf-8", "replace")}
    return {}


def decode(path):
    with open(path, "rb") as f:
        data = f.read()
    (launch, magic, version, arch, ident, ctime, mtime, free, total,
     desc_off, desc_size, data_off, data_size) = HEADER.unpack_from(data, 0)
    header = {
        "launch_script": text(launch), "magic": text(magic), "version": text(version),
        "arch": ARCHES.get(arch, "unknown"), "id": str(uuid.UUID(bytes=ident)),
        "created_at": utc(ctime), "created_at_unix": ctime,
        "modified_at": utc(mtime), "modified_at_unix": mtime,
        "descriptors_free": free, "descriptors_total": total,
        "descriptors_offset": desc_off, "descriptors_size": desc_size,
        "data_offset": data_off, "data_size": data_size,
    }
    objects = []
    for i in range(total):
        (code, used, ident, group, link, offset, size, padded, ctime, mtime, uid, gid,
         name, extra) = DESCRIPTOR.unpack_from(data, desc_off + i * DESCRIPTOR.size)
        if not used:
            continue
        link_id = link & ~GROUP_MASK
        obj = {
            "id": ident,
            "group": (group & ~GROUP_MASK) or None,
            "link": None if link_id == 0 else {
                "kind": "group" if link & GROUP_MASK == GROUP_MASK else "object",
                "id": link_id},
            "offset": offset, "size": size, "size_with_padding": padded,
            "type": DATA_TYPES.get(code, "Unknown"), "type_code": code,
            "name": text(name),
            "created_at": utc(ctime), "created_at_unix": ctime,
            "modified_at": utc(mtime), "modified_at_unix": mtime,
            "uid": uid, "gid": gid,
        }
        obj.update(metadata(code, extra))
        objects.append(obj)
    return {"file_len": len(data), "header": header, "objects": objects}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "..", "shared", "fixtures", "sif")
    folder = sys.argv[1] if len(sys.argv) > 1 else default
    names = sorted(n for n in os.listdir(folder) if n.endswith(".sif"))
    table = {n: decode(os.path.join(folder, n)) for n in names}
    json.dump(table, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
