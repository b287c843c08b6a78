//! Shared by the journal service tests: runs the real `daas-host journal` process, opens stores over
//! `RemoteJournal`, and reads and rewrites the host's journal file (`u32 BE length | record` frames).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use enclave::store::journal::{JournalEndpoint, RemoteJournal, RemoteJournalOptions};
use enclave::store::{StaticKeys, Store, StoreOptions};

/// The cluster id of every test store.
pub const CLUSTER: [u8; 16] = *b"journal-svc-test";
/// The sealing key of every test store.
pub const KEY: [u8; 32] = [7; 32];

/// The `daas-host` binary: `$DAAS_HOST_BIN`, or the one cargo built next to `daas-enclave` (it is built when
/// the host package's tests are built too, e.g. `cargo test -p host -p enclave`).
pub fn host_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DAAS_HOST_BIN") {
        return PathBuf::from(p);
    }
    let enclave = Path::new(env!("CARGO_BIN_EXE_daas-enclave"));
    let bin = enclave.with_file_name("daas-host");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p host --bin daas-host` (or run `cargo test -p host -p enclave`), \
         or point DAAS_HOST_BIN at it",
        bin.display()
    );
    let help = Command::new(&bin)
        .args(["journal", "--help"])
        .output()
        .expect("daas-host runs");
    assert!(
        help.status.success(),
        "{} has no `journal` subcommand (a stale build?): rebuild it with `cargo build -p host --bin daas-host`",
        bin.display()
    );
    bin
}

/// The `daas-enclave` binary: `$DAAS_ENCLAVE_BIN`, or the one cargo built for these tests. Checked for the
/// `--journal` flag, since other checkouts sharing the target directory may have replaced it.
pub fn enclave_bin() -> PathBuf {
    let bin = std::env::var_os("DAAS_ENCLAVE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_daas-enclave")),
        PathBuf::from,
    );
    let help = Command::new(&bin)
        .arg("--help")
        .output()
        .expect("daas-enclave runs");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--journal"),
        "{} has no --journal flag (a stale build from another checkout?): rebuild it with \
         `cargo build -p enclave --bin daas-enclave`, or point DAAS_ENCLAVE_BIN at it",
        bin.display()
    );
    bin
}

/// Waits for a line starting with `prefix` on `child`'s stdout, in a thread; later lines are sent on the
/// returned channel. Panics if the process ends first or nothing comes for a generous while (a hang guard, not
/// a timing assertion).
pub fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Blocks until a line starting with `prefix` arrives.
pub fn wait_for(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(e) => panic!("no {prefix:?} line: {e}"),
        }
    }
}

/// A running `daas-host journal --dir DIR --listen unix:SOCK`; killed on drop.
pub struct HostJournal {
    child: Option<Child>,
    /// The journal directory the host owns.
    pub dir: PathBuf,
    /// Its socket.
    pub sock: PathBuf,
}

impl HostJournal {
    /// Starts the service on `dir`, listening on `sock`, and waits until it listens.
    pub fn start(dir: &Path, sock: &Path) -> HostJournal {
        let mut child = Command::new(host_bin())
            .arg("journal")
            .arg("--dir")
            .arg(dir)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("daas-host journal starts");
        let rx = lines(&mut child);
        wait_for(&rx, "journal listening on");
        HostJournal {
            child: Some(child),
            dir: dir.to_path_buf(),
            sock: sock.to_path_buf(),
        }
    }

    /// `unix:SOCK`.
    pub fn endpoint(&self) -> JournalEndpoint {
        JournalEndpoint::Unix(self.sock.clone())
    }

    /// SIGKILL, as a crash: nothing is flushed or closed gracefully.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills (if running) and starts again on the same directory and socket.
    pub fn restart(&mut self) {
        self.kill9();
        let fresh = HostJournal::start(&self.dir, &self.sock);
        *self = fresh;
    }

    /// The records in the host's journal file.
    pub fn records(&self) -> Vec<Vec<u8>> {
        read_frames(&self.dir.join("journal"))
    }
}

impl Drop for HostJournal {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Opens a store whose index is `index` and whose journal is the service at `endpoint`.
pub fn open_store(index: &Path, endpoint: JournalEndpoint) -> enclave::store::Result<Store> {
    let journal = RemoteJournal::connect(endpoint, RemoteJournalOptions::default())?;
    Store::open(
        StoreOptions::new(index, CLUSTER),
        &StaticKeys::single(KEY),
        Box::new(journal),
    )
}

/// Closes a store and waits until RocksDB is closed.
pub fn close(store: Store) {
    assert!(store.close(Duration::from_secs(60)), "store did not close");
}

/// Splits the host's journal file into records.
pub fn read_frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("journal file");
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(bytes[at + 4..at + 4 + n].to_vec());
        at += 4 + n;
    }
    out
}

/// Rewrites the host's journal file with `records`.
pub fn write_frames(path: &Path, records: &[Vec<u8>]) {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    std::fs::write(path, out).expect("rewrite journal file");
}

/// The sequence number in a record's cleartext header (`KDJ1 | seq | ...`).
pub fn seq_of(record: &[u8]) -> u64 {
    assert_eq!(&record[..4], b"KDJ1");
    u64::from_be_bytes(record[4..12].try_into().unwrap())
}

/// The full error chain, for matching.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
