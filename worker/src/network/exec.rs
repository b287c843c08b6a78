//! Running the system's network tools (`ip`, `bridge`, `nft`, `conntrack`, `sysctl`, CNI plugins) in
//! this process's network namespace or in a named one.
//!
//! A worker programs the namespace it runs in ([`Netns::Current`]); tests, the benchmark and the dev
//! topology program named namespaces (`/run/netns/NAME`) through `ip netns exec`, exactly the
//! commands a worker running inside that namespace would run.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::{Error, Result};

/// The network namespace commands run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// This process's own network namespace.
    Current,
    /// A named namespace (`ip netns add NAME`, bound at `/run/netns/NAME`).
    Named(String),
}

impl Netns {
    /// A named namespace.
    pub fn named(name: impl Into<String>) -> Self {
        Self::Named(name.into())
    }

    /// The namespace's name, `None` for [`Netns::Current`].
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Current => None,
            Self::Named(name) => Some(name),
        }
    }

    /// A command running `program` in this namespace (`ip netns exec NAME program` for a named one).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = match self {
            Self::Current => Command::new(program),
            Self::Named(name) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", name, program]);
                cmd
            }
        };
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs `program args...` and returns its stdout.
    ///
    /// # Errors
    /// [`Error::Spawn`] when it cannot start, [`Error::Command`] when it exits non-zero.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        self.run_with_stdin(program, args, None).await
    }

    /// Runs `program args...` with `stdin` (if any) and returns its stdout.
    ///
    /// # Errors
    /// As [`Netns::run`].
    pub async fn run_with_stdin(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<String> {
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let describe = || self.describe(program, args);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that exits early closes its stdin; its exit status tells what happened.
            let _ = pipe.write_all(input).await;
            drop(pipe);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| Error::Spawn {
                program: program.to_owned(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: describe(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `program args...` and decodes its stdout as JSON (`ip -j`, `nft -j`, `bridge -j`); empty
    /// output decodes as JSON `null`.
    ///
    /// # Errors
    /// As [`Netns::run`], and [`Error::Output`] when the output is not the expected JSON.
    pub async fn run_json<T: DeserializeOwned>(&self, program: &str, args: &[&str]) -> Result<T> {
        let out = self.run(program, args).await?;
        let text = if out.trim().is_empty() {
            "null"
        } else {
            out.as_str()
        };
        serde_json::from_str(text).map_err(|source| Error::Output {
            command: self.describe(program, args),
            source,
        })
    }

    /// Sets a sysctl (`net.ipv4.ip_forward`) in this namespace (sysctls under `net.` are per namespace).
    ///
    /// # Errors
    /// As [`Netns::run`] for a named namespace; [`Error::File`] when `/proc/sys` cannot be written.
    pub async fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        match self {
            Self::Current => {
                let path = std::path::PathBuf::from("/proc/sys").join(key.replace('.', "/"));
                tokio::fs::write(&path, value)
                    .await
                    .map_err(|source| Error::File { path, source })
            }
            Self::Named(_) => {
                let setting = format!("{key}={value}");
                self.run("sysctl", &["-q", "-w", &setting]).await.map(drop)
            }
        }
    }

    fn describe(&self, program: &str, args: &[&str]) -> String {
        let mut line = match self {
            Self::Current => String::new(),
            Self::Named(name) => format!("ip netns exec {name} "),
        };
        line.push_str(program);
        for arg in args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }
}

/// Runs `f` on a thread that has entered the network namespace `netns` (sockets `f` creates belong
/// to it, wherever they are used afterwards).
///
/// # Errors
/// [`Error::Netns`] when the namespace cannot be entered.
pub fn in_netns<T: Send>(netns: &Netns, f: impl FnOnce() -> T + Send) -> Result<T> {
    let Some(name) = netns.name() else {
        return Ok(f());
    };
    let path = PathBuf::from("/run/netns").join(name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
                Error::Netns {
                    name: name.to_owned(),
                    source,
                }
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Config(format!("thread in {name} panicked"))))
    })
}

/// A TCP listener bound to `addr` inside `netns` (non-blocking, ready for tokio).
///
/// # Errors
/// When the namespace cannot be entered or the address bound.
pub fn tcp_listener(netns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    in_netns(netns, || {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?
    .map_err(|source| Error::Socket {
        what: format!("bind {addr}"),
        source,
    })
}

/// A TCP connection to `addr` made from inside `netns` (blocking mode, `timeout` to connect).
///
/// # Errors
/// When the namespace cannot be entered or the connection fails (refused, timed out, ...):
/// [`Error::Socket`] carries the `io::Error` and its kind.
pub fn tcp_connect(netns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    in_netns(netns, || TcpStream::connect_timeout(&addr, timeout))?.map_err(|source| {
        Error::Socket {
            what: format!("connect {addr}"),
            source,
        }
    })
}

/// A UDP socket bound to `addr` inside `netns` (non-blocking, ready for tokio).
///
/// # Errors
/// When the namespace cannot be entered or the address bound.
pub fn udp_socket(netns: &Netns, addr: SocketAddr) -> Result<UdpSocket> {
    in_netns(netns, || {
        let s = UdpSocket::bind(addr)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })?
    .map_err(|source| Error::Socket {
        what: format!("bind udp {addr}"),
        source,
    })
}
