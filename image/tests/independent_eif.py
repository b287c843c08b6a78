#!/usr/bin/env python3
"""An independent reading of an EIF file: layout, CRC and PCRs.

Written from the format description (big-endian header of 548 bytes, 12-byte section
headers, CRC-32 over the header without its last 4 bytes plus everything after it,
PCRn = SHA384(0^48 || SHA384(data))), sharing no code with the Rust implementation.
Prints JSON: {"sections": [[type, size], ...], "crc_ok": bool, "PCR0": hex, ...}.
"""
import base64
import hashlib
import json
import struct
import sys
import zlib


def extend(data: bytes) -> str:
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(data).digest()).hexdigest()


def cbor(data: bytes, at: int = 0):
    """Decodes one CBOR item (the subset a signature section uses); returns (item, next)."""
    major, info = data[at] >> 5, data[at] & 31
    at += 1
    if info < 24:
        arg = info
    else:
        n = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        arg = int.from_bytes(data[at:at + n], "big")
        at += n
    if major == 0:
        return arg, at
    if major == 1:
        return -1 - arg, at
    if major in (2, 3):
        raw = data[at:at + arg]
        return (raw if major == 2 else raw.decode()), at + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, at = cbor(data, at)
            items.append(item)
        return items, at
    if major == 5:
        pairs = {}
        for _ in range(arg):
            key, at = cbor(data, at)
            pairs[key], at = cbor(data, at)
        return pairs, at
    raise ValueError(f"unsupported CBOR major type {major}")


def pem_to_der(pem: bytes) -> bytes:
    lines = pem.decode().strip().splitlines()
    body = [l for l in lines if not l.startswith("-----")]
    return base64.b64decode("".join(body))


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
    signatures = [d for k, d in sections if k == 4]
    if signatures:
        entries, end = cbor(signatures[0])
        assert end == len(signatures[0])
        cert_pem = bytes(entries[0]["signing_certificate"])
        cose, _ = cbor(bytes(entries[0]["signature"]))
        protected, _ = cbor(cose[0])
        signed, _ = cbor(cose[2])
        out["cose_protected"] = {str(k): v for k, v in protected.items()}
        out["signed_pcr_index"] = signed["register_index"]
        out["signed_pcr_value"] = bytes(signed["register_value"]).hex()
        out["signature_len"] = len(cose[3])
        out["PCR8"] = extend(pem_to_der(cert_pem))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
