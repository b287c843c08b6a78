"""Exec into a pod with the official Python client's `stream` (PyPI `kubernetes`), as a
controller or a notebook would: stdout, stderr and stdin on their channels, the exit code
from the error channel's Status.

Usage: python_exec.py KUBECONFIG POD. Prints one line per check; exits non-zero (with a
traceback) on the first failure.
"""

import sys
import time

from kubernetes import client, config
from kubernetes.stream import stream


def run(core, pod, command, stdin=None):
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        "default",
        command=command,
        stdin=stdin is not None,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    if stdin is not None:
        resp.write_stdin(stdin)
    out, err = "", ""
    deadline = time.monotonic() + 60
    while resp.is_open():
        assert time.monotonic() < deadline, f"exec {command} still open after 60 s: {out!r} {err!r}"
        resp.update(timeout=1)
        if resp.peek_stdout():
            out += resp.read_stdout()
        if resp.peek_stderr():
            err += resp.read_stderr()
    return out, err, resp.returncode


def main(kubeconfig, pod):
    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))

    out, err, code = run(core, pod, ["sh", "-c", "echo hi; echo err >&2; exit 3"])
    assert (out, err, code) == ("hi\n", "err\n", 3), (out, err, code)
    print("exec with an exit code ok")

    # The client cannot close stdin (channel protocol v4): the command reads what it needs.
    out, err, code = run(core, pod, ["sh", "-c", "head -n 2 | sed s/^/got:/"], stdin="one\ntwo\n")
    assert (out, err, code) == ("got:one\ngot:two\n", "", 0), (out, err, code)
    print("exec with stdin ok")

    # The preloaded form returns what the command printed.
    out = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        "default",
        command=["echo", "preloaded"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out == "preloaded\n", repr(out)
    print("preloaded exec ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
