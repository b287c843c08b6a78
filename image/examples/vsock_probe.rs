//! A stand-in enclave payload for the QEMU boot smoke test (`tests/qemu_boot.rs`).
//!
//! Started by `daas-init` as the enclave binary inside a guest with `vsock_loopback`, it
//! checks the init's work over real `AF_VSOCK`:
//! * it plays the Nitro parent for the boot heartbeat: listens on `CID_ANY:9000`, expects
//!   the init to send `0xB7`, echoes it;
//! * it serves `GET /readyz` on vsock port 5000 and, as a client in the same guest,
//!   requests it through `VMADDR_CID_LOCAL`;
//! * it checks the mounts the init made.
//!
//! It prints `PROBE-RESULT: PASS` or `PROBE-RESULT: FAIL <reason>` on the console and
//! exits 0 or 1.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use vsock::{VMADDR_CID_ANY, VMADDR_CID_LOCAL, VsockAddr, VsockListener, VsockStream};

const HEARTBEAT_PORT: u32 = 9000;
const API_PORT: u32 = 5000;

/// One console line in a single `write` (the console is shared with the init).
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

fn heartbeat_parent(listener: &VsockListener) -> Result<String, String> {
    let (mut conn, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut b = [0u8; 1];
    conn.read_exact(&mut b).map_err(|e| format!("read: {e}"))?;
    conn.write_all(&b).map_err(|e| format!("echo: {e}"))?;
    if b[0] != 0xB7 {
        return Err(format!("heartbeat byte {:#04x}", b[0]));
    }
    Ok(format!("heartbeat 0xb7 from cid {}", peer.cid()))
}

fn serve_readyz(listener: &VsockListener) -> Result<(), String> {
    let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 256];
    while !request.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let response: &[u8] = if request.starts_with(b"GET /readyz ") {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    } else {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    };
    conn.write_all(response).map_err(|e| format!("write: {e}"))
}

fn get_readyz() -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..50 {
        match VsockStream::connect(&VsockAddr::new(VMADDR_CID_LOCAL, API_PORT)) {
            Ok(mut s) => {
                let peer = s.peer_addr().map_err(|e| e.to_string())?;
                s.write_all(b"GET /readyz HTTP/1.1\r\nHost: enclave\r\n\r\n")
                    .map_err(|e| format!("send: {e}"))?;
                let mut response = String::new();
                s.read_to_string(&mut response)
                    .map_err(|e| format!("recv: {e}"))?;
                return Ok(format!(
                    "{:?} from cid {}",
                    response.replace("\r\n", " | "),
                    peer.cid()
                ));
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("connect: {last}"))
}

fn run() -> Result<(), String> {
    say(&format!("probe: pid {} started", std::process::id()));
    for dir in ["/proc/self", "/sys/kernel", "/dev/null", "/tmp"] {
        if !std::path::Path::new(dir).exists() {
            return Err(format!("{dir} missing: the init did not mount it"));
        }
    }
    std::fs::write("/tmp/probe", b"x").map_err(|e| format!("/tmp not writable: {e}"))?;
    say("probe: /proc, /sys, /dev and /tmp are mounted");

    let hb = VsockListener::bind(&VsockAddr::new(VMADDR_CID_ANY, HEARTBEAT_PORT))
        .map_err(|e| format!("bind heartbeat port: {e}"))?;
    let api = VsockListener::bind(&VsockAddr::new(VMADDR_CID_ANY, API_PORT))
        .map_err(|e| format!("bind api port: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(heartbeat_parent(&hb));
    });
    let server = std::thread::spawn(move || serve_readyz(&api));

    let readyz = get_readyz()?;
    say(&format!("probe: GET /readyz over AF_VSOCK -> {readyz}"));
    server
        .join()
        .map_err(|_| "server thread panicked".to_owned())??;
    if !readyz.contains("200 OK") || !readyz.ends_with("ok\" from cid 1") {
        return Err(format!("unexpected /readyz answer {readyz}"));
    }
    let hb = rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| "no heartbeat from the init".to_owned())??;
    say(&format!("probe: {hb}"));
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => {
            say("PROBE-RESULT: PASS");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("PROBE-RESULT: FAIL {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}
