//! The payload of the QEMU boot smoke test (`tests/qemu_boot.rs`): drives the real
//! `daas-enclave` and the real host relay inside one guest with `vsock_loopback`.
//!
//! `daas-init` starts it as the enclave binary with two arguments, the paths of a static
//! `daas-enclave` and a static `daas-host`. In order it:
//! 1. checks the mounts the init made, and that the data directory is on a tmpfs;
//! 2. plays the Nitro parent for the init's boot heartbeat (listens on vsock
//!    `CID_ANY:9000`, expects `0xB7`, echoes it);
//! 3. brings the loopback interface up (the init configures no network);
//! 4. starts `daas-enclave --dev` listening on vsock `1:6443` (`VMADDR_CID_LOCAL`) and
//!    waits for its `ready` line;
//! 5. starts `daas-host relay` forwarding TCP `127.0.0.1:6443` to vsock `1:6443` and
//!    waits for its `listening` line;
//! 6. as a client, with TLS verified against the dev CA the enclave wrote to its data
//!    directory: `GET /readyz` straight over `AF_VSOCK`, `GET /readyz` through the relay,
//!    then `GET /api/v1/namespaces` through the relay anonymously (refused), with the
//!    admin bearer token and with the admin client certificate (both a `NamespaceList`);
//! 7. stops the relay and the enclave with SIGTERM and checks they exit cleanly.
//!
//! Every step prints one `smoke: ...` line on the console; the last line is
//! `SMOKE-RESULT: PASS` or `SMOKE-RESULT: FAIL <reason>`, and the exit status 0 or 1 (the
//! init then reboots, which ends the VM).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};
use nix::unistd::Pid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use vsock::{VMADDR_CID_ANY, VMADDR_CID_LOCAL, VsockAddr, VsockListener, VsockStream};

const HEARTBEAT_PORT: u32 = 9000;
/// The enclave's vsock port (the kube-API ingress proposed in docs/notes/nitro.md).
const ENCLAVE_PORT: u32 = 6443;
/// The relay's public TCP address inside the guest.
const RELAY_ADDR: &str = "127.0.0.1:6443";
/// On the tmpfs the init mounts at `/tmp`.
const DATA_DIR: &str = "/tmp/daas";
/// Bounds on waits, only so that a stuck guest fails instead of hanging; software
/// emulation is slow, so they are generous.
const START_DEADLINE: Duration = Duration::from_secs(600);
const IO_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_DEADLINE: Duration = Duration::from_secs(120);

type Result<T> = std::result::Result<T, String>;

/// One console line in a single `write` (the console is shared with the init and the
/// children).
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("smoke: {line}\n").as_bytes());
}

fn check_mounts() -> Result<()> {
    for path in ["/proc/self", "/sys/kernel", "/dev/null", "/tmp"] {
        if !std::path::Path::new(path).exists() {
            return Err(format!("{path} missing: the init did not mount it"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| format!("reading /proc/mounts: {e}"))?;
    let tmp_is_tmpfs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some("tmpfs") && f.next() == Some("/tmp") && f.next() == Some("tmpfs")
    });
    if !tmp_is_tmpfs {
        return Err("/tmp is not a tmpfs".to_owned());
    }
    say(&format!(
        "/proc, /sys, /dev and /tmp are mounted; data dir {DATA_DIR} is on tmpfs"
    ));
    Ok(())
}

/// Accepts the init's heartbeat on `listener`, echoes it, and describes it.
fn heartbeat_parent(listener: &VsockListener) -> Result<String> {
    let (mut conn, peer) = listener
        .accept()
        .map_err(|e| format!("heartbeat accept: {e}"))?;
    let mut b = [0u8; 1];
    conn.read_exact(&mut b)
        .map_err(|e| format!("heartbeat read: {e}"))?;
    conn.write_all(&b)
        .map_err(|e| format!("heartbeat echo: {e}"))?;
    if b != [0xB7] {
        return Err(format!("heartbeat byte {:#04x}", b[0]));
    }
    Ok(format!("heartbeat 0xb7 from cid {}", peer.cid()))
}

/// Sets `IFF_UP` on `lo` with one rtnetlink `RTM_NEWLINK` request and checks the ack.
fn loopback_up() -> Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const IFF_UP: u32 = 0x1;
    let index: i32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .map_err(|e| format!("reading lo's ifindex: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("lo's ifindex: {e}"))?;
    // nlmsghdr (len, type, flags, seq, pid) then ifinfomsg (family, pad, type, index,
    // flags, change).
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(&index.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("netlink send: {e}"))?;
    let mut ack = [0u8; 256];
    let n = recv(fd.as_raw_fd(), &mut ack, MsgFlags::empty())
        .map_err(|e| format!("netlink recv: {e}"))?;
    let field = |at: usize, len: usize| ack.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let errno = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, errno) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(format!(
            "setting lo up: {}",
            std::io::Error::from_raw_os_error(e.saturating_neg())
        )),
        _ => Err(format!("unexpected netlink answer ({n} bytes)")),
    }
}

/// The children, stopped on drop (SIGKILL) if the run ends early.
#[derive(Default)]
struct Children(Vec<(&'static str, Child)>);

impl Children {
    /// Sends SIGTERM to each child, newest first, and waits (bounded) for it to exit.
    fn stop_all(&mut self) -> Result<()> {
        while let Some((name, mut child)) = self.0.pop() {
            let status = stop(&mut child).map_err(|e| format!("stopping {name}: {e}"))?;
            say(&format!("{name} stopped by SIGTERM: {status}"));
            if !status.success() {
                return Err(format!("{name} exited with {status} after SIGTERM"));
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(child: &mut Child) -> Result<ExitStatus> {
    let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_owned())?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| format!("SIGTERM: {e}"))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Ok(status);
        }
        if started.elapsed() > STOP_DEADLINE {
            return Err(format!("still running {STOP_DEADLINE:?} after SIGTERM"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `cmd` with its standard output piped, and waits (bounded) for a line starting
/// with `marker`; later lines are copied to the console.
fn spawn_until(
    children: &mut Children,
    name: &'static str,
    mut cmd: Command,
    marker: &'static str,
) -> Result<String> {
    let mut child = cmd
        .env_clear()
        .env("PATH", "/bin")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    children.0.push((name, child));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.starts_with(marker) {
                sent = true;
                let _ = tx.send(line);
            } else {
                say(&format!("{name} stdout: {line}"));
            }
        }
    });
    let started = Instant::now();
    let line = rx.recv_timeout(START_DEADLINE).map_err(|_| {
        format!("{name} printed no {marker:?} line (exited, or not within {START_DEADLINE:?})")
    })?;
    say(&format!(
        "{name} says {line:?} after {:.1?}",
        started.elapsed()
    ));
    Ok(line)
}

/// An HTTP response, body de-chunked.
struct Response {
    status: u16,
    body: String,
}

/// The TLS client configuration: the server certificate as the only root, HTTP/1.1, optionally the
/// admin client certificate.
fn tls_config(client_cert: bool) -> Result<Arc<ClientConfig>> {
    let pki = std::path::Path::new(DATA_DIR).join("pki");
    let ca = CertificateDer::from_pem_file(pki.join("server.crt"))
        .map_err(|e| format!("reading the server certificate: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| format!("adding the dev CA: {e}"))?;
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots);
    let mut config = if client_cert {
        let cert = CertificateDer::from_pem_file(pki.join("admin.crt"))
            .map_err(|e| format!("reading admin.crt: {e}"))?;
        let key = PrivateKeyDer::from_pem_file(pki.join("admin.key"))
            .map_err(|e| format!("reading admin.key: {e}"))?;
        builder
            .with_client_auth_cert(vec![cert], key)
            .map_err(|e| format!("admin client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `GET path` over TLS on `sock`, verified against the dev CA for the name `127.0.0.1`.
fn https_get<S: Read + Write>(
    sock: S,
    config: Arc<ClientConfig>,
    path: &str,
    token: Option<&str>,
) -> Result<Response> {
    let name = ServerName::try_from("127.0.0.1").map_err(|e| format!("server name: {e}"))?;
    let conn = ClientConnection::new(config, name).map_err(|e| format!("TLS client: {e}"))?;
    let mut tls = StreamOwned::new(conn, sock);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:6443\r\nUser-Agent: enclave-smoke\r\n\
         Accept: application/json\r\n{auth}Connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("TLS handshake or send: {e}"))?;
    let version = tls
        .conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify: the response is judged by its framing.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("reading the response: {e}")),
    }
    let response = parse_response(&raw)?;
    say(&format!(
        "  {version}, server certificate verified against the dev CA; HTTP {}",
        response.status
    ));
    Ok(response)
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without a header end")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

fn tcp_to_relay() -> Result<TcpStream> {
    let sock = TcpStream::connect(RELAY_ADDR).map_err(|e| format!("connect {RELAY_ADDR}: {e}"))?;
    sock.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("read timeout: {e}"))?;
    Ok(sock)
}

/// The namespace names of a `NamespaceList`, sorted.
fn namespace_names(response: &Response) -> Result<Vec<String>> {
    if response.status != 200 {
        return Err(format!(
            "GET /api/v1/namespaces: HTTP {} {}",
            response.status, response.body
        ));
    }
    let list: serde_json::Value = serde_json::from_str(&response.body)
        .map_err(|e| format!("namespace list is not JSON: {e}"))?;
    if list["kind"] != "NamespaceList" {
        return Err(format!("expected a NamespaceList, got {}", list["kind"]));
    }
    let mut names: Vec<String> = list["items"]
        .as_array()
        .ok_or("NamespaceList without items")?
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    if !names.iter().any(|n| n == "kube-system") {
        return Err(format!("kube-system missing from {names:?}"));
    }
    Ok(names)
}

fn run() -> Result<()> {
    say(&format!("pid {} started", std::process::id()));
    let mut args = std::env::args().skip(1);
    let (Some(enclave_bin), Some(host_bin)) = (args.next(), args.next()) else {
        return Err("usage: enclave_smoke DAAS_ENCLAVE DAAS_HOST".to_owned());
    };
    check_mounts()?;

    let hb = VsockListener::bind(&VsockAddr::new(VMADDR_CID_ANY, HEARTBEAT_PORT))
        .map_err(|e| format!("bind the heartbeat port: {e}"))?;
    let (hb_tx, hb_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = hb_tx.send(heartbeat_parent(&hb));
    });

    loopback_up()?;
    say("lo is up");

    let mut children = Children::default();
    let enclave_listen = format!("vsock:{VMADDR_CID_LOCAL}:{ENCLAVE_PORT}");
    let mut enclave = Command::new(&enclave_bin);
    enclave.args(["--dev", "--data-dir", DATA_DIR, "--listen", &enclave_listen]);
    enclave.args(["--advertise", &format!("https://{RELAY_ADDR}")]);
    spawn_until(&mut children, "daas-enclave", enclave, "ready ")?;

    let mut relay = Command::new(&host_bin);
    relay.args(["relay", "--listen", &format!("tcp:{RELAY_ADDR}")]);
    relay.args(["--enclave", &enclave_listen]);
    // The relay's slowloris guard, widened for software emulation.
    relay.args(["--handshake-timeout", "300"]);
    spawn_until(
        &mut children,
        "daas-host relay",
        relay,
        "relay listening on",
    )?;

    let anonymous = tls_config(false)?;
    say(&format!(
        "GET /readyz straight over AF_VSOCK to {enclave_listen}"
    ));
    let vsock = VsockStream::connect(&VsockAddr::new(VMADDR_CID_LOCAL, ENCLAVE_PORT))
        .map_err(|e| format!("vsock connect: {e}"))?;
    vsock
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("read timeout: {e}"))?;
    let direct = https_get(vsock, Arc::clone(&anonymous), "/readyz", None)?;
    if (direct.status, direct.body.as_str()) != (200, "ok") {
        return Err(format!(
            "direct /readyz: HTTP {} {:?}",
            direct.status, direct.body
        ));
    }
    say("readyz over AF_VSOCK: 200 ok");

    say(&format!(
        "GET /readyz through the relay at tcp:{RELAY_ADDR}"
    ));
    let relayed = https_get(tcp_to_relay()?, Arc::clone(&anonymous), "/readyz", None)?;
    if (relayed.status, relayed.body.as_str()) != (200, "ok") {
        return Err(format!(
            "relayed /readyz: HTTP {} {:?}",
            relayed.status, relayed.body
        ));
    }
    say("readyz through the relay: 200 ok");

    say("GET /api/v1/namespaces through the relay, anonymous");
    let refused = https_get(tcp_to_relay()?, anonymous, "/api/v1/namespaces", None)?;
    if !matches!(refused.status, 401 | 403) {
        return Err(format!(
            "anonymous namespace list: HTTP {}, expected 401 or 403",
            refused.status
        ));
    }
    say(&format!("anonymous namespaces refused: {}", refused.status));

    say("GET /api/v1/namespaces through the relay, admin bearer token");
    let token_path = std::path::Path::new(DATA_DIR).join("pki/admin.token");
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| format!("reading {}: {e}", token_path.display()))?;
    let by_token = https_get(
        tcp_to_relay()?,
        tls_config(false)?,
        "/api/v1/namespaces",
        Some(token.trim()),
    )?;
    say(&format!(
        "namespaces with the admin token: 200 NamespaceList {:?}",
        namespace_names(&by_token)?
    ));

    say("GET /api/v1/namespaces through the relay, admin client certificate");
    let by_cert = https_get(
        tcp_to_relay()?,
        tls_config(true)?,
        "/api/v1/namespaces",
        None,
    )?;
    say(&format!(
        "namespaces with the admin certificate: 200 NamespaceList {:?}",
        namespace_names(&by_cert)?
    ));

    let hb = hb_rx
        .recv_timeout(START_DEADLINE)
        .map_err(|_| "no heartbeat from the init".to_owned())??;
    say(&hb);

    children.stop_all()
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => {
            let _ = std::io::stderr().write_all(b"SMOKE-RESULT: PASS\n");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::io::stderr().write_all(format!("SMOKE-RESULT: FAIL {e}\n").as_bytes());
            std::process::ExitCode::FAILURE
        }
    }
}
