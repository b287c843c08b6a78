"""An HTTPS audit webhook receiver for `cli --test audit_webhook`: Python's own TLS and HTTP
server, independent of the enclave's client.

Usage:
  audit_webhook.py certs DIR NAME
      writes DIR/ca.crt, DIR/server.crt (for NAME and 127.0.0.1, issued by the CA) and
      DIR/server.key, with PyPI's `cryptography`.
  audit_webhook.py serve DIR PORT OUT [--fail-first N]
      serves DIR/server.crt on 127.0.0.1:PORT (0: any), prints `listening PORT`, and appends
      one JSON line per POST to OUT: {"path", "authorization", "content_type", "status",
      "body"}. The first N POSTs are answered 503 (a webhook that is briefly down).
"""

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certs(directory, name):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: two test CAs must not look like one to a verifier.
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"audit webhook test CA {os.urandom(4).hex()}")]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    with open(f"{directory}/ca.crt", "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(f"{directory}/server.crt", "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(f"{directory}/server.key", "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def serve(directory, port, out, fail_first):
    failures_left = [fail_first]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            status = 200
            if failures_left[0] > 0:
                failures_left[0] -= 1
                status = 503
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            record = {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "status": status,
                "body": body,
            }
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{directory}/server.crt", f"{directory}/server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


def main():
    if sys.argv[1] == "certs":
        certs(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "serve":
        fail_first = 0
        if len(sys.argv) > 6 and sys.argv[5] == "--fail-first":
            fail_first = int(sys.argv[6])
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], fail_first)
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
