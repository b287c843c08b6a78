//! Running the system's network tools (`ip`, `bridge`, `nft`, `conntrack`, `sysctl`, CNI plugins) in
//! this process's network namespace or in a named one.
//!
//! A worker programs the namespace it runs in ([`Netns::Current`]); tests, the benchmark and the dev
//! topology program named namespaces (`/run/netns/NAME`) through `ip netns exec`, exactly the
//! commands a worker running inside that namespace would run.

use std::process::Stdio;

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
