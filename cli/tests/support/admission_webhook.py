"""An HTTPS admission webhook for `cli --test admission_webhook`: Python's own TLS and HTTP
server, independent of the enclave's client. Certificates come from `audit_webhook.py certs`.

Usage:
  admission_webhook.py serve DIR PORT OUT
      serves DIR/server.crt on 127.0.0.1:PORT (0: any), prints `listening PORT`, appends each
      AdmissionReview request it receives to OUT (one JSON line), and answers by path:
        /deny-blue  denies objects whose data.color is "blue" (403, reason Forbidden);
        /label      allows, adding the label webhook.example.com/seen=yes (a JSONPatch);
        /warn       allows with the warning "looked at by the warn webhook";
        /garbage    answers something that is not an AdmissionReview.
"""

import base64
import http.server
import json
import os
import ssl
import sys


def answer(path, request):
    uid = request["uid"]
    obj = request.get("object") or {}
    response = {"uid": uid, "allowed": True}
    if path == "/deny-blue":
        if (obj.get("data") or {}).get("color") == "blue":
            response = {
                "uid": uid,
                "allowed": False,
                "status": {"code": 403, "reason": "Forbidden", "message": "blue is not allowed here"},
            }
    elif path == "/label":
        labels = (obj.get("metadata") or {}).get("labels")
        if labels is None:
            patch = [{"op": "add", "path": "/metadata/labels", "value": {"webhook.example.com/seen": "yes"}}]
        else:
            patch = [{"op": "add", "path": "/metadata/labels/webhook.example.com~1seen", "value": "yes"}]
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    elif path == "/warn":
        response["warnings"] = ["looked at by the warn webhook"]
    elif path == "/garbage":
        return b"not a review"
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    ).encode()


def serve(directory, port, out):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            review = json.loads(self.rfile.read(length))
            with open(out, "a") as f:
                f.write(json.dumps({"path": self.path, "review": review}) + "\n")
            body = answer(self.path.split("?")[0], review["request"])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(directory, "server.crt"), os.path.join(directory, "server.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
