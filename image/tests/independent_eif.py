#!/usr/bin/env python3
"""An independent reading of an EIF file: layout, CRC and PCRs.

Written from the format description (big-endian header of 548 bytes, 12-byte section
headers, CRC-32 over the header without its last 4 bytes plus everything after it,
PCRn = SHA384(0^48 || SHA384(data))), sharing no code with the Rust implementation.
Prints JSON: {"sections": [[type, size], ...], "crc_ok": bool, "PCR0": hex, ...}.
"""
import hashlib
import json
import struct
import sys
import zlib


def extend(data: bytes) -> str:
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(data).digest()).hexdigest()


def main(path: str) -> None:
    blob = open(path, "rb").read()
    magic, version, flags, mem, cpus, _reserved, count = struct.unpack_from(">4sHHQQHH", blob, 0)
    assert magic == b".eif", magic
    offsets = struct.unpack_from(">32Q", blob, 28)
    sizes = struct.unpack_from(">32Q", blob, 28 + 256)
    (stored_crc,) = struct.unpack_from(">I", blob, 544)
    crc = zlib.crc32(blob[:544])
    crc = zlib.crc32(blob[548:], crc)
    sections = []
    for i in range(count):
        kind, sflags, size = struct.unpack_from(">HHQ", blob, offsets[i])
        assert size == sizes[i]
        start = offsets[i] + 12
        sections.append((kind, blob[start:start + size]))
    kernel = [d for k, d in sections if k == 1][0]
    cmdline = [d for k, d in sections if k == 2][0]
    ramdisks = [d for k, d in sections if k == 3]
    out = {
        "version": version,
        "flags": flags,
        "default_mem": mem,
        "default_cpus": cpus,
        "sections": [[k, len(d)] for k, d in sections],
        "crc_ok": stored_crc == (crc & 0xFFFFFFFF),
        "PCR0": extend(kernel + cmdline + b"".join(ramdisks)),
        "PCR1": extend(kernel + cmdline + ramdisks[0]),
        "PCR2": extend(b"".join(ramdisks[1:])),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
