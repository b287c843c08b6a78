//! A pseudo-terminal for the fake's TTY sessions: the process gets the terminal side as its
//! stdin, stdout and stderr; the session reads and writes the controlling side, and resizes
//! set its window size (what `stty size` in the process reports).

use std::io;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use protocol::tunnel::channel::TerminalSize;
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

/// The two sides of a new terminal.
pub(super) struct Terminal {
    /// The controlling side (ours).
    pub(super) controller: OwnedFd,
    /// The terminal side (the process's).
    pub(super) terminal: OwnedFd,
}

impl Terminal {
    pub(super) fn open() -> io::Result<Self> {
        let controller = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        rustix::pty::grantpt(&controller)?;
        rustix::pty::unlockpt(&controller)?;
        let name = rustix::pty::ptsname(&controller, Vec::new())?;
        let terminal = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Terminal {
            controller,
            terminal,
        })
    }

    /// The process's three standard streams, all the terminal.
    pub(super) fn stdio(&self) -> io::Result<(Stdio, Stdio, Stdio)> {
        Ok((
            Stdio::from(self.terminal.try_clone()?),
            Stdio::from(self.terminal.try_clone()?),
            Stdio::from(self.terminal.try_clone()?),
        ))
    }
}

/// Sets the window size of the terminal `controller` controls.
pub(super) fn resize(controller: &OwnedFd, size: TerminalSize) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        controller,
        Winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}
