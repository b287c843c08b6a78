#!/usr/bin/env python3
"""A fake AWS KMS for the KMS boot tests: the real JSON 1.1 wire format, checked as KMS checks it.

Independent of the project's Rust code on purpose:
  * SigV4 is verified with botocore's own SigV4Auth (signature recomputed from the request as received);
  * the Nitro attestation document is verified here with cbor2 + cryptography (COSE_Sign1 ES384, certificate
    chain up to the pinned root given by --root, validity), not with our attestation crate;
  * the key policy is a JSON map {"PCR<n>": "<hex>"} read on every request (like KMS's
    kms:RecipientAttestation:PCR<n> conditions, compared case-insensitively);
  * CiphertextForRecipient is made by `openssl cms -encrypt` (RSAES-OAEP-SHA256, AES-256-CBC, -keyid) to the
    document's public_key, as KMS makes it.

CiphertextBlob is "FKMS1" | 12-byte nonce | AES-256-GCM(master key, data key, aad = key id), the master key kept
in --state-dir (this fake's own "inside of KMS"). Every data key it hands out is appended, hex, to
--state-dir/issued-keys so tests can check that nobody else stored it.

Operations: TrentService.GenerateDataKey and TrentService.Decrypt, both only with a Recipient. Errors are HTTP
400 with {"__type": ..., "message": ...} as KMS sends them.
"""

import argparse
import base64
import binascii
import datetime
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cbor2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ARGS = None
ACCOUNT = "000000000000"


class KmsError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def key_arn():
    return f"arn:aws:kms:{ARGS.region}:{ACCOUNT}:key/{ARGS.key_id}"


# ---------------------------------------------------------------- SigV4 (botocore)

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)


def verify_sigv4(headers, body):
    auth = headers.get("Authorization", "")
    m = AUTH_RE.match(auth)
    if not m:
        raise KmsError("IncompleteSignatureException", "Authorization header is not AWS4-HMAC-SHA256")
    akid, date, region, service, signed, signature = m.groups()
    if akid != ARGS.access_key_id:
        raise KmsError("UnrecognizedClientException", "The security token included in the request is invalid.")
    if region != ARGS.region or service != "kms":
        raise KmsError("InvalidSignatureException", f"Credential should be scoped to {ARGS.region}/kms")
    amz_date = headers.get("X-Amz-Date", "")
    if not amz_date.startswith(date):
        raise KmsError("InvalidSignatureException", "Date in Credential scope does not match X-Amz-Date")
    token = headers.get("X-Amz-Security-Token")
    signed_names = signed.split(";")
    required = {"host", "x-amz-date", "x-amz-target", "content-type"} | ({"x-amz-security-token"} if token else set())
    if not required <= set(signed_names):
        raise KmsError("InvalidSignatureException", f"SignedHeaders must include {sorted(required)}")
    request = AWSRequest(
        method="POST",
        url=f"http://{headers.get('Host', '')}/",
        data=body,
        headers={name: headers.get(name, "") for name in signed_names},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ARGS.access_key_id, ARGS.secret_access_key, token), "kms", ARGS.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise KmsError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )


# ---------------------------------------------------------------- Nitro attestation (cbor2 + cryptography)


def emulator_payload(protected, payload_bytes, signature):
    """QEMU's nitro-enclave NSM signs nothing: protected header {1: -1}, 64 zero bytes of
    signature, certificate and CA bundle. Accepted only with --dangerous-accept-qemu-emulator,
    which real KMS has no equivalent of."""
    if cbor2.loads(protected) != {1: -1} or signature != bytes(64):
        raise KmsError("ValidationException", "attestation document is not signed with ES384")
    payload = cbor2.loads(payload_bytes)
    if payload.get("certificate") != bytes(64) or payload.get("cabundle") != [bytes(64)]:
        raise KmsError("ValidationException", "not a QEMU emulator attestation document")
    return payload


def verify_attestation(document):
    try:
        cose = cbor2.loads(document)
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad document
        raise KmsError("ValidationException", f"attestation document is not CBOR: {e}")
    if isinstance(cose, cbor2.CBORTag):
        cose = cose.value
    if not (isinstance(cose, list) and len(cose) == 4):
        raise KmsError("ValidationException", "attestation document is not a COSE_Sign1")
    protected, _unprotected, payload_bytes, signature = cose
    if ARGS.dangerous_accept_qemu_emulator and cbor2.loads(protected).get(1) == -1:
        return check_recipient_key(emulator_payload(protected, payload_bytes, signature))
    if cbor2.loads(protected).get(1) != -35:
        raise KmsError("ValidationException", "attestation document is not signed with ES384")
    payload = cbor2.loads(payload_bytes)
    leaf = x509.load_der_x509_certificate(payload["certificate"])
    chain = [x509.load_der_x509_certificate(c) for c in payload["cabundle"]] + [leaf]
    if ARGS.root is None:
        raise KmsError("ValidationException", "no attestation root is trusted (--root)")
    with open(ARGS.root, "rb") as f:
        root = x509.load_pem_x509_certificate(f.read())
    if chain[0].public_bytes(serialization.Encoding.DER) != root.public_bytes(serialization.Encoding.DER):
        raise KmsError("ValidationException", "attestation document does not chain to the trusted root")
    now = datetime.datetime.now(datetime.timezone.utc)
    for parent, child in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except (InvalidSignature, ValueError, TypeError) as e:
            raise KmsError("ValidationException", f"attestation certificate chain is broken: {e}")
    for cert in chain:
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise KmsError("ValidationException", "an attestation certificate is not valid now")
    if len(signature) != 96:
        raise KmsError("ValidationException", "attestation signature is not ES384")
    sig_structure = cbor2.dumps(["Signature1", protected, b"", payload_bytes])
    der = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    try:
        leaf.public_key().verify(der, sig_structure, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise KmsError("ValidationException", "attestation document signature does not verify")
    return check_recipient_key(payload)


def check_recipient_key(payload):
    public_key = payload.get("public_key")
    if not public_key:
        raise KmsError("ValidationException", "attestation document has no public_key")
    try:
        key = serialization.load_der_public_key(public_key)
    except ValueError:
        raise KmsError("ValidationException", "the recipient public key is not a SubjectPublicKeyInfo")
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 2048:
        raise KmsError("ValidationException", "the recipient public key must be RSA-2048")
    return payload


def check_policy(op, payload):
    with open(ARGS.policy) as f:
        conditions = json.load(f)
    for name, want in conditions.items():
        index = int(name.removeprefix("PCR"))
        have = payload["pcrs"].get(index, b"").hex()
        if have.lower() != want.lower():
            raise KmsError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{ACCOUNT}:user/broker is not authorized to perform: kms:{op} on resource: "
                f"{key_arn()} because no resource-based policy allows the kms:{op} action "
                f"(condition kms:RecipientAttestation:{name} not satisfied)",
            )


# ---------------------------------------------------------------- keys and envelopes


def master_key():
    path = os.path.join(ARGS.state_dir, "master.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, AESGCM.generate_key(bit_length=256))
        os.close(fd)
    with open(path, "rb") as f:
        return f.read()


def wrap_blob(data_key):
    nonce = os.urandom(12)
    return b"FKMS1" + nonce + AESGCM(master_key()).encrypt(nonce, data_key, ARGS.key_id.encode())


def unwrap_blob(blob):
    if not blob.startswith(b"FKMS1") or len(blob) < 5 + 12 + 16:
        raise KmsError("InvalidCiphertextException", "")
    try:
        return AESGCM(master_key()).decrypt(blob[5:17], blob[17:], ARGS.key_id.encode())
    except InvalidTag:
        raise KmsError("InvalidCiphertextException", "")


def envelope_for(spki_der, data_key):
    with tempfile.TemporaryDirectory() as d:
        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

        with open(os.path.join(d, "pub.der"), "wb") as f:
            f.write(spki_der)
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectKeyIdentifier=hash\n")
        with open(os.path.join(d, "key.bin"), "wb") as f:
            f.write(data_key)
        openssl("pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "signer.key")
        openssl("x509", "-new", "-subj", "/CN=kms recipient", "-key", "signer.key", "-force_pubkey", "pub.pem",
                "-extfile", "ext.cnf", "-days", "1", "-out", "recipient.pem")
        openssl("cms", "-encrypt", "-binary", "-in", "key.bin", "-outform", "DER", "-aes-256-cbc",
                "-recip", "recipient.pem", "-keyid",
                "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
                "-keyopt", "rsa_mgf1_md:sha256", "-out", "envelope.der")
        with open(os.path.join(d, "envelope.der"), "rb") as f:
            return f.read()


def b64field(body, name):
    try:
        return base64.b64decode(body[name], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise KmsError("ValidationException", f"{name} is missing or not base64")


def recipient(op, body):
    r = body.get("Recipient")
    if not isinstance(r, dict):
        # The key policy only allows requests with an attestation document.
        raise KmsError("AccessDeniedException", f"kms:{op} is allowed only with a Recipient attestation")
    if r.get("KeyEncryptionAlgorithm") != "RSAES_OAEP_SHA_256":
        raise KmsError("ValidationException", "KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256")
    payload = verify_attestation(b64field(r, "AttestationDocument"))
    check_policy(op, payload)
    return payload["public_key"]


def issued(data_key):
    with open(os.path.join(ARGS.state_dir, "issued-keys"), "a") as f:
        f.write(data_key.hex() + "\n")


def handle(op, body):
    if body.get("KeyId") not in (ARGS.key_id, key_arn()):
        raise KmsError("NotFoundException", f"Key '{body.get('KeyId')}' does not exist")
    if op == "GenerateDataKey":
        n = body.get("NumberOfBytes")
        if not isinstance(n, int) or not 1 <= n <= 1024:
            raise KmsError("ValidationException", "NumberOfBytes must be between 1 and 1024")
        spki = recipient(op, body)
        data_key = os.urandom(n)
        issued(data_key)
        return {
            "KeyId": key_arn(),
            "CiphertextBlob": base64.b64encode(wrap_blob(data_key)).decode(),
            "CiphertextForRecipient": base64.b64encode(envelope_for(spki, data_key)).decode(),
        }
    if op == "Decrypt":
        blob = b64field(body, "CiphertextBlob")
        spki = recipient(op, body)
        data_key = unwrap_blob(blob)
        return {
            "KeyId": key_arn(),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "CiphertextForRecipient": base64.b64encode(envelope_for(spki, data_key)).decode(),
        }
    raise KmsError("UnknownOperationException", "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            if self.path != "/":
                raise KmsError("UnknownOperationException", "")
            if self.headers.get("Content-Type") != "application/x-amz-json-1.1":
                raise KmsError("SerializationException", "Content-Type must be application/x-amz-json-1.1")
            target = self.headers.get("X-Amz-Target", "")
            op = target.removeprefix("TrentService.")
            if op not in ("GenerateDataKey", "Decrypt"):
                raise KmsError("UnknownOperationException", "")
            verify_sigv4(self.headers, body)
            try:
                request = json.loads(body)
            except ValueError:
                raise KmsError("SerializationException", "body is not JSON")
            self.reply(200, handle(op, request))
            print(f"fake-kms: {op} ok", file=sys.stderr, flush=True)
        except KmsError as e:
            print(f"fake-kms: refused: {e.kind}: {e.message}", file=sys.stderr, flush=True)
            self.reply(400, {"__type": e.kind, "message": e.message})
        except Exception as e:  # noqa: BLE001 - a malformed request must not kill the handler silently
            print(f"fake-kms: failed: {e!r}", file=sys.stderr, flush=True)
            self.reply(500, {"__type": "KMSInternalException", "message": repr(e)})

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--root", help="PEM of the attestation root to trust (read per request)")
    p.add_argument("--policy", required=True, help='JSON {"PCR0": "<hex>", ...} (read per request)')
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--key-id", default="1234abcd-12ab-34cd-56ef-1234567890ab")
    p.add_argument("--access-key-id", required=True)
    p.add_argument("--secret-access-key", required=True)
    p.add_argument(
        "--dangerous-accept-qemu-emulator",
        action="store_true",
        help="also accept the UNSIGNED documents of QEMU's nitro-enclave emulator (tests of images under it)",
    )
    ARGS = p.parse_args()
    if ARGS.root is None and not ARGS.dangerous_accept_qemu_emulator:
        p.error("--root is required (unless --dangerous-accept-qemu-emulator)")
    os.makedirs(ARGS.state_dir, exist_ok=True)
    master_key()  # created before any request thread can race for it
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"fake-kms listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
