//! File descriptors, the one resource a listening node can run out of by
//! the kernel's rule rather than its own: `--max-connections` is lowered
//! at start to fit the process's open-file limit (`ulimit -n`), and one
//! descriptor is kept in reserve so that a connection accepted past the
//! limit anyway (another part of the process used descriptors up) is
//! answered `503` and closed, never left silent in the backlog.
//!
//! Redis does both: it lowers `maxclients` to fit and answers "max number
//! of clients reached"; the reserve descriptor is the classic way to be
//! able to say so at `EMFILE` (libev, nginx's `accept` handling).

use std::fs::File;
use std::io;

/// Descriptors the node keeps for itself besides its connections: the
/// listener, the poll and its waker, the signal pipe, standard streams,
/// the proxy's upstream (and one draining), the store's files, the reserve.
pub const RESERVED_FDS: u64 = 32;

/// The soft open-file limit of this process, from `/proc/self/limits`
/// (`None`: unlimited, or not known on this system).
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_limit(&text)
}

fn parse_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connections that fit under an open-file limit of `nofile`: what it
/// leaves after the node's own descriptors (at least one).
pub fn fitting(max_connections: usize, nofile: Option<u64>) -> usize {
    match nofile {
        None => max_connections,
        Some(n) => {
            let room = n.saturating_sub(RESERVED_FDS).max(n / 2).max(1);
            max_connections.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
    }
}

/// Whether an accept failed for want of descriptors (`EMFILE`, `ENFILE`).
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// One descriptor held in reserve, given up for a moment to accept and
/// refuse a connection when the process has none left.
#[derive(Debug)]
pub struct Reserve(Option<File>);

impl Reserve {
    /// Takes the reserve descriptor (on `/dev/null`).
    pub fn new() -> Reserve {
        Reserve(File::open("/dev/null").ok())
    }

    /// Runs `f` with the reserve descriptor freed, then takes it back;
    /// false (and `f` not run) if there was none to free.
    pub fn spend<T>(&mut self, f: impl FnOnce() -> T) -> Option<T> {
        let file = self.0.take()?;
        drop(file);
        let out = f();
        self.0 = File::open("/dev/null").ok();
        Some(out)
    }
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max cpu time              unlimited            unlimited            seconds\n\
                    Max open files            64                   1048576              files\n";
        assert_eq!(parse_limit(text), Some(64));
        assert_eq!(parse_limit(&text.replace(" 64 ", " unlimited ")), None);
        assert_eq!(parse_limit("nothing"), None);
        let shell = std::process::Command::new("sh")
            .args(["-c", "ulimit -n"])
            .output()
            .unwrap();
        let shell = String::from_utf8(shell.stdout).unwrap();
        assert_eq!(open_file_limit().map(|n| n.to_string()), Some(shell.trim().to_string()));
    }

    #[test]
    fn connections_are_lowered_to_fit_and_never_to_zero() {
        assert_eq!(fitting(10_000, Some(64)), 32);
        assert_eq!(fitting(10_000, Some(1024)), 992);
        assert_eq!(fitting(10, Some(1024)), 10, "never raised");
        assert_eq!(fitting(10_000, Some(40)), 20, "half, when the reserve would leave less");
        assert_eq!(fitting(10_000, Some(1)), 1);
        assert_eq!(fitting(10_000, Some(0)), 1);
        assert_eq!(fitting(10_000, None), 10_000);
    }

    #[test]
    fn the_reserve_is_freed_only_for_the_call() {
        let mut r = Reserve::new();
        assert_eq!(r.spend(|| 7), Some(7));
        assert!(r.0.is_some(), "taken back");
        r.0 = None;
        assert_eq!(r.spend(|| 7), None);
        assert!(out_of_fds(&io::Error::from_raw_os_error(24)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(23)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(11)));
    }
}
