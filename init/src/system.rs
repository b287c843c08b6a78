//! The system calls of the boot sequence. Runs only as PID 1 inside the enclave (or the
//! QEMU guest); everything decidable without a kernel lives in `steps`, tested.

use std::ffi::CString;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, sync};
use vsock::{VsockAddr, VsockStream};

use protocol::layout;

use crate::steps::{
    Heartbeat, heartbeat_exchange, heartbeat_from_cmdline, module_files, retry_until,
};
use crate::steps::{parse_cmd, parse_env};

/// How long the heartbeat is retried. `nitro-cli` waits at least 90 s for it.
const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(60);
const HEARTBEAT_PAUSE: Duration = Duration::from_millis(100);
/// How long the init waits for the heartbeat's echo.
const HEARTBEAT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one console line with a single `write`, so lines from the init and the enclave
/// (which share the console) never interleave mid-line.
macro_rules! say {
    ($($arg:tt)*) => {{
        let line = format!("daas-init: {}\n", format_args!($($arg)*));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }};
}

fn mount_one(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    if let Err(e) = std::fs::create_dir_all(target) {
        say!("cannot create {target}: {e}");
    }
    match mount(Some(source), target, Some(fstype), flags, data) {
        Ok(()) | Err(Errno::EBUSY) => {}
        Err(e) => say!("mount {fstype} on {target} failed: {e}"),
    }
}

fn mount_all() {
    let common = MsFlags::MS_NOSUID;
    mount_one("devtmpfs", "/dev", "devtmpfs", common, Some("mode=0755"));
    mount_one(
        "proc",
        "/proc",
        "proc",
        common | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );
    mount_one(
        "sysfs",
        "/sys",
        "sysfs",
        common | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );
    mount_one(
        "tmpfs",
        "/tmp",
        "tmpfs",
        common | MsFlags::MS_NODEV,
        Some("mode=1777"),
    );
    mount_one(
        "tmpfs",
        "/run",
        "tmpfs",
        common | MsFlags::MS_NODEV,
        Some("mode=0755"),
    );
}

fn load_modules() {
    let dir = Path::new("/").join(layout::MODULES_DIR);
    let files = match module_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            say!("cannot list {}: {e}", dir.display());
            return;
        }
    };
    let no_params = CString::default();
    for path in files {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                say!("cannot open {}: {e}", path.display());
                continue;
            }
        };
        match finit_module(&file, &no_params, ModuleInitFlags::empty()) {
            Ok(()) => say!("loaded {}", path.display()),
            Err(Errno::EEXIST) => say!("{} already loaded", path.display()),
            Err(e) => say!("loading {} failed: {e}", path.display()),
        }
    }
}

fn start_enclave() -> Result<Pid, String> {
    let root = Path::new("/");
    let cmd_text = std::fs::read_to_string(root.join(layout::CMD_FILE))
        .map_err(|e| format!("cannot read /{}: {e}", layout::CMD_FILE))?;
    let argv = parse_cmd(&cmd_text)?;
    let env_text = std::fs::read_to_string(root.join(layout::ENV_FILE)).unwrap_or_default();
    let env = parse_env(&env_text)?;
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/bin")
        .envs(env)
        .current_dir("/")
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = i32::try_from(child.id()).map_err(|_| "child pid out of range".to_owned())?;
    say!("started {program} as pid {pid}");
    Ok(Pid::from_raw(pid))
}

fn send_heartbeat() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (cid, port) = match heartbeat_from_cmdline(&cmdline) {
        Ok(Heartbeat::To { cid, port }) => (cid, port),
        Ok(Heartbeat::Off) => {
            say!("heartbeat off");
            return;
        }
        Err(bad) => {
            say!(
                "bad {}={bad}; using the Nitro default",
                layout::HEARTBEAT_PARAM
            );
            layout::HEARTBEAT_DEFAULT
        }
    };
    let attempt = || -> std::io::Result<()> {
        let mut stream = VsockStream::connect(&VsockAddr::new(cid, port))?;
        stream.set_read_timeout(Some(HEARTBEAT_READ_TIMEOUT))?;
        heartbeat_exchange(&mut stream)
    };
    match retry_until(HEARTBEAT_DEADLINE, HEARTBEAT_PAUSE, attempt) {
        Ok(((), tries)) => say!("heartbeat to {cid}:{port} ok (attempt {tries})"),
        Err((e, tries)) => say!("heartbeat to {cid}:{port} failed after {tries} attempts: {e}"),
    }
}

/// Reaps children until `enclave` exits; returns its status.
fn reap_until(enclave: Pid) -> WaitStatus {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(enclave) => match status {
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return status,
                _ => {}
            },
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                say!("waitpid: {e}");
                return WaitStatus::StillAlive;
            }
        }
    }
}

fn shut_down() -> ! {
    sync();
    let result = reboot(RebootMode::RB_AUTOBOOT);
    say!("reboot failed: {result:?}");
    // PID 1 must never exit (the kernel would panic); keep reaping instead.
    loop {
        let _ = waitpid(None::<Pid>, None);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs the boot sequence described in the [module docs](super). Never returns: the
/// machine reboots when the enclave exits.
///
/// # Errors
/// Only before doing anything: a message if this process is not PID 1.
pub fn boot() -> Result<std::convert::Infallible, String> {
    if getpid() != Pid::from_raw(1) {
        return Err("daas-init must run as PID 1 (the kernel's init)".to_owned());
    }
    mount_all();
    load_modules();
    let enclave = match start_enclave() {
        Ok(pid) => pid,
        Err(e) => {
            say!("{e}");
            shut_down();
        }
    };
    send_heartbeat();
    match reap_until(enclave) {
        WaitStatus::Exited(_, code) => say!("enclave exited with status {code}"),
        WaitStatus::Signaled(_, signal, _) => say!("enclave killed by {signal}"),
        other => say!("enclave ended: {other:?}"),
    }
    shut_down();
}
