#!/usr/bin/env python3
"""Writes testdata/python-zlib-syn-streams.bin: two SYN_STREAM frames whose header blocks are
compressed by Python's zlib (the C zlib, an implementation independent of the crate's) in one
compression context with the SPDY/3 dictionary, as kubectl's port-forward opens an error and a
data stream. Run from the crate directory: python3 testdata/gen.py"""
import struct
import zlib

WORDS = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
         "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
         "cache-control", "connection", "content-base", "content-encoding", "content-language",
         "content-length", "content-location", "content-md5", "content-range", "content-type",
         "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
         "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
         "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
         "referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
         "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
         "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in WORDS) + TAIL.encode()
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2


def block(headers):
    out = struct.pack(">I", len(headers))
    for name, value in headers:
        out += struct.pack(">I", len(name)) + name.encode()
        out += struct.pack(">I", len(value)) + value.encode()
    return out


def syn_stream(z, stream_id, headers):
    compressed = z.compress(block(headers)) + z.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressed
    return struct.pack(">HHI", 0x8003, 1, len(payload)) + payload


if __name__ == "__main__":
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    frames = syn_stream(z, 1, [("streamtype", "error"), ("port", "8080"), ("requestid", "0")])
    frames += syn_stream(z, 3, [("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
    with open("testdata/python-zlib-syn-streams.bin", "wb") as f:
        f.write(frames)
