//! The steps of the boot sequence that are decidable without a kernel, tested here: where the heartbeat goes and
//! the exchange itself, the enclave's command line and environment, the module list, retrying.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use protocol::layout;

/// Where the heartbeat goes, from the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Send it to this vsock CID and port.
    To {
        /// Context id (3 is the Nitro parent instance).
        cid: u32,
        /// Port (9000 on Nitro).
        port: u32,
    },
    /// Send none (`daas.heartbeat=off`).
    Off,
}

/// Reads `daas.heartbeat=` from a kernel command line; absent means the Nitro default
/// `3:9000`. The last occurrence wins, as for kernel parameters.
///
/// # Errors
/// The offending value, if it is neither `off` nor `CID:PORT` with decimal `u32`s.
pub fn heartbeat_from_cmdline(cmdline: &str) -> Result<Heartbeat, String> {
    let prefix = format!("{}=", layout::HEARTBEAT_PARAM);
    let Some(value) = cmdline
        .split_whitespace()
        .filter_map(|p| p.strip_prefix(&prefix))
        .next_back()
    else {
        let (cid, port) = layout::HEARTBEAT_DEFAULT;
        return Ok(Heartbeat::To { cid, port });
    };
    if value == "off" {
        return Ok(Heartbeat::Off);
    }
    let parsed = value
        .split_once(':')
        .and_then(|(c, p)| Some((c.parse::<u32>().ok()?, p.parse::<u32>().ok()?)));
    match parsed {
        Some((cid, port)) => Ok(Heartbeat::To { cid, port }),
        None => Err(value.to_owned()),
    }
}

/// The heartbeat exchange on a connected stream: write `0xB7`, read one byte, require
/// `0xB7`.
///
/// # Errors
/// The stream's I/O error, or `InvalidData` naming the byte that came back instead.
pub fn heartbeat_exchange(stream: &mut (impl Read + Write)) -> std::io::Result<()> {
    stream.write_all(&[layout::HEARTBEAT_BYTE])?;
    stream.flush()?;
    let mut echo = [0u8; 1];
    stream.read_exact(&mut echo)?;
    if echo[0] != layout::HEARTBEAT_BYTE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("heartbeat echo was {:#04x}, expected 0xb7", echo[0]),
        ));
    }
    Ok(())
}

/// Calls `attempt` until it succeeds or `deadline` passes, sleeping `pause` between tries.
/// Returns the last error and the number of attempts made.
///
/// # Errors
/// The last attempt's error once the deadline has passed.
pub fn retry_until<T, E>(
    deadline: Duration,
    pause: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<(T, u32), (E, u32)> {
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        tries = tries.saturating_add(1);
        match attempt() {
            Ok(v) => return Ok((v, tries)),
            Err(e) if start.elapsed() >= deadline => return Err((e, tries)),
            Err(_) => std::thread::sleep(pause),
        }
    }
}

/// The enclave's command line from the text of [`layout::CMD_FILE`]: one argument per
/// line, empty lines kept only after the program (an argument may be empty).
///
/// # Errors
/// A message if there is no program.
pub fn parse_cmd(text: &str) -> Result<Vec<String>, String> {
    let args: Vec<String> = text.lines().map(str::to_owned).collect();
    match args.first() {
        Some(program) if !program.is_empty() => Ok(args),
        _ => Err("the command file names no program on its first line".to_owned()),
    }
}

/// The enclave's environment from the text of [`layout::ENV_FILE`]: `KEY=VALUE` lines;
/// blank lines are skipped.
///
/// # Errors
/// The first line that is not `KEY=VALUE` with a non-empty key.
pub fn parse_env(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| match line.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("environment line {line:?} is not KEY=VALUE")),
        })
        .collect()
}

/// The module files under `dir`, in byte order of their names; an absent directory gives
/// none.
///
/// # Errors
/// An I/O error reading an existing directory.
pub fn module_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests;
