#!/usr/bin/env python3
"""A stand-in for `nitro-cli` that runs enclave images under QEMU's `nitro-enclave` machine.

`daas launch` drives it exactly as it drives the real nitro-cli (same subcommands, flags and
JSON output, aws-nitro-enclaves-cli v1.5.0 `json_output.rs`), and it records every call it gets
(one JSON array of arguments per line in $QEMU_NITRO_CLI_LOG) so tests can check them.

Environment:
  QEMU_NITRO_CLI_DIR   work directory: vhost-device-vsock sockets, console logs, state
                       (`daas launch --vhost-user-vsock-dir` names the same directory)
  QEMU_NITRO_CLI_BIN   directory holding qemu-system-x86_64 (with the nitro-enclave machine)
                       and vhost-device-vsock (scripts/build-nitro-emulator --dir)
  QEMU_NITRO_CLI_LOG   where calls are recorded

run-enclave boots the EIF with `-M nitro-enclave`, its vsock device served by vhost-device-vsock
at DIR/vm{CID}.vsock (guest-cid CID). In that socket mode the guest's connections to the host
(CID 2) on port P arrive at DIR/vm{CID}.vsock_P; those of the parent's service ports are symlinks
to DIR/host.vsock_P, where `daas launch` listens, so several enclaves share the services as on a
Nitro parent. Like nitro-cli, it waits for the enclave's boot heartbeat (port 9000: 0xB7 echoed)
before it answers, and fails if none comes. The console goes to DIR/console-{CID}.log.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

WORK = os.environ.get("QEMU_NITRO_CLI_DIR", "")
BIN = os.environ.get("QEMU_NITRO_CLI_BIN", "")
LOG = os.environ.get("QEMU_NITRO_CLI_LOG", "")
SERVICE_PORTS = [7001, 7002, 7003, 8000, 8001]
HEARTBEAT_PORT = 9000
HEARTBEAT_TIMEOUT = 240


def fail(code, message):
    sys.stderr.write(f"[ {code} ] {message}\n")
    sys.exit(1)


def state_path():
    return os.path.join(WORK, "enclaves.json")


def load_state():
    try:
        with open(state_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save_state(state):
    tmp = state_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, state_path())


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def flag(args, name, default=None):
    if name in args:
        i = args.index(name)
        if i + 1 < len(args):
            return args[i + 1]
    return default


def run_enclave(args):
    eif = flag(args, "--eif-path")
    cpus = int(flag(args, "--cpu-count", "1"))
    memory = int(flag(args, "--memory", "1024"))
    state = load_state()
    cid = flag(args, "--enclave-cid")
    if cid is None:
        cid = 4
        while str(cid) in state:
            cid += 1
    cid = int(cid)
    if str(cid) in state:
        fail("E29", f"an enclave with CID {cid} is already running")
    enclave_id = f"i-0qemu0000000000-enc{cid:016x}"
    vsock = os.path.join(WORK, f"vm{cid}.vsock")
    for port in SERVICE_PORTS:
        link = f"{vsock}_{port}"
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join(WORK, f"host.vsock_{port}"), link)
    heartbeat_path = f"{vsock}_{HEARTBEAT_PORT}"
    if os.path.lexists(heartbeat_path):
        os.remove(heartbeat_path)
    heartbeat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    heartbeat.bind(heartbeat_path)
    heartbeat.listen(1)
    console = open(os.path.join(WORK, f"console-{cid}.log"), "ab")
    vhost_socket = os.path.join(WORK, f"vhost{cid}.socket")
    backend = subprocess.Popen(
        [
            os.path.join(BIN, "vhost-device-vsock"),
            "--vm",
            f"guest-cid={cid},socket={vhost_socket},uds-path={vsock}",
        ],
        stdout=console,
        stderr=console,
        start_new_session=True,
    )
    for _ in range(100):
        if os.path.exists(vhost_socket):
            break
        time.sleep(0.05)
    qemu = subprocess.Popen(
        [
            os.path.join(BIN, "qemu-system-x86_64"),
            "-M",
            f"nitro-enclave,vsock=c,id={enclave_id}",
            "-kernel",
            eif,
            "-m",
            f"{memory}M",
            "-smp",
            str(cpus),
            "-nographic",
            "-accel",
            "tcg",
            "-L",
            "/usr/share/qemu",
            "-chardev",
            f"socket,id=c,path={vhost_socket}",
            "-no-reboot",
        ],
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=console,
        start_new_session=True,
    )
    state[str(cid)] = {
        "id": enclave_id,
        "qemu": qemu.pid,
        "backend": backend.pid,
        "cpus": cpus,
        "memory": memory,
        "eif": eif,
        "debug": "--debug-mode" in args,
    }
    save_state(state)
    heartbeat.settimeout(HEARTBEAT_TIMEOUT)
    try:
        conn, _ = heartbeat.accept()
        conn.settimeout(30)
        if conn.recv(1) != b"\xb7":
            raise OSError("bad heartbeat byte")
        conn.sendall(b"\xb7")
        conn.close()
    except OSError as e:
        terminate_pids(state.pop(str(cid)))
        save_state(state)
        fail("E39", f"enclave boot failed: no heartbeat ({e})")
    finally:
        heartbeat.close()
    sys.stderr.write(f"Started enclave with enclave-cid: {cid}, memory: {memory} MiB, cpu-ids: [1]\n")
    print(
        json.dumps(
            {
                "EnclaveName": os.path.splitext(os.path.basename(eif))[0],
                "EnclaveID": enclave_id,
                "ProcessID": qemu.pid,
                "EnclaveCID": cid,
                "NumberOfCPUs": cpus,
                "CPUIDs": list(range(1, cpus + 1)),
                "MemoryMiB": memory,
            },
            indent=4,
        )
    )


def terminate_pids(entry):
    for key in ("qemu", "backend"):
        try:
            os.killpg(entry[key], signal.SIGKILL)
        except OSError:
            pass


def describe_enclaves(_args):
    out = []
    for cid, e in sorted(load_state().items()):
        out.append(
            {
                "EnclaveName": os.path.splitext(os.path.basename(e["eif"]))[0],
                "EnclaveID": e["id"],
                "ProcessID": e["qemu"],
                "EnclaveCID": int(cid),
                "NumberOfCPUs": e["cpus"],
                "CPUIDs": list(range(1, e["cpus"] + 1)),
                "MemoryMiB": e["memory"],
                "State": "RUNNING" if alive(e["qemu"]) else "TERMINATING",
                "Flags": "DEBUG_MODE" if e["debug"] else "NONE",
            }
        )
    print(json.dumps(out, indent=4))


def terminate_enclave(args):
    enclave_id = flag(args, "--enclave-id")
    state = load_state()
    for cid, e in list(state.items()):
        if e["id"] == enclave_id:
            terminate_pids(e)
            del state[cid]
            save_state(state)
            print(json.dumps({"EnclaveName": "", "EnclaveID": enclave_id, "Terminated": True}, indent=4))
            return
    fail("E11", f"no enclave {enclave_id}")


def main():
    args = sys.argv[1:]
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps(args) + "\n")
    if not (WORK and BIN):
        fail("E00", "QEMU_NITRO_CLI_DIR and QEMU_NITRO_CLI_BIN must be set")
    commands = {
        "run-enclave": run_enclave,
        "describe-enclaves": describe_enclaves,
        "terminate-enclave": terminate_enclave,
    }
    if not args or args[0] not in commands:
        fail("E01", f"unsupported command {args[:1]}")
    commands[args[0]](args[1:])


if __name__ == "__main__":
    main()
