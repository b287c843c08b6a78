//! Every installed kubectl, one at a time, against the test enclave.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Every installed `kubectl.1.X`, oldest first: (version, binary).
pub fn versions() -> Vec<(String, PathBuf)> {
    let path = std::env::var_os("PATH").unwrap();
    let kubectl = std::env::split_paths(&path)
        .map(|p| p.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl on PATH (the machine image ships 1.27 … 1.33)");
    let dir = std::fs::canonicalize(&kubectl)
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let minor = e
                .file_name()
                .to_str()?
                .strip_prefix("kubectl.1.")?
                .parse()
                .ok()?;
            Some((minor, e.path()))
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 7,
        "kubectl 1.27 … 1.33 expected, found {out:?}"
    );
    out.into_iter()
        .map(|(m, p)| (format!("1.{m}"), p))
        .collect()
}

/// One kubectl binary with one kubeconfig and its own cache.
pub struct Kubectl {
    pub version: String,
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Kubectl {
    pub fn new(version: &str, bin: &Path, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            version: version.to_string(),
            bin: bin.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// The same kubectl with an environment variable set (e.g. forcing SPDY).
    pub fn with_env(mut self, key: &str, value: &str) -> Kubectl {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"))
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs with `stdin`, bounded to 60 s.
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.command(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            let mut w = child.stdin.take().unwrap();
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        wait_bounded(
            child,
            Duration::from_secs(60),
            &format!("kubectl {} {args:?}", self.version),
        )
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        check(
            self.run_stdin(args, Some(stdin.as_bytes())),
            &self.version,
            args,
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        check(self.run(args), &self.version, args)
    }

    /// Starts kubectl in the background with piped output.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn check(out: Output, version: &str, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl {version} {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits for `child`, killing it after `limit` (then the test fails).
pub fn wait_bounded(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "{what} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
