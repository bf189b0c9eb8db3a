//! The soak's processes: a durable server, links, proxies, each a child
//! running this same binary, and the faults done to them (kill -9 and
//! restart, SIGSTOP/SIGCONT, a link's control requests).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child node, killed when dropped.
pub struct Proc {
    child: Child,
    /// What it listens on.
    pub addr: SocketAddr,
    /// A link's control address.
    pub control: Option<SocketAddr>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid` (SIGKILL 9, SIGSTOP 19, SIGCONT 18 on Linux).
pub fn signal(pid: u32, sig: i32) -> io::Result<()> {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // the pid is a child this process started and has not reaped.
    let r = unsafe { kill(pid as i32, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGKILL, SIGSTOP, SIGCONT.
pub const KILL: i32 = 9;
/// Freezes a process.
pub const STOP: i32 = 19;
/// Thaws it.
pub const CONT: i32 = 18;

impl Proc {
    /// Starts `args` of this binary, logging to `log`, and reads its
    /// `listening on ADDR` line (and a link's `control on ADDR`).
    pub fn start(args: &[String], log: &Path) -> io::Result<Proc> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log)?)
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?);
        let mut read_addr = |prefix: &str| -> io::Result<SocketAddr> {
            let mut line = String::new();
            out.read_line(&mut line)?;
            line.trim()
                .strip_prefix(prefix)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| io::Error::other(format!("{args:?} said {line:?}, see {}", log.display())))
        };
        let addr = read_addr("listening on ")?;
        let control = if args.iter().any(|a| a == "--control") {
            Some(read_addr("control on ")?)
        } else {
            None
        };
        // Whatever it prints later goes nowhere (the pipe is closed).
        Ok(Proc { child, addr, control })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        let _ = signal(self.pid(), KILL);
        let _ = self.child.wait();
    }
}

/// The server's arguments: durable in `dir`, short leases so a frozen
/// proxy holds writes up for at most a second.
pub fn server_args(listen: &str, dir: &Path, size: usize) -> Vec<String> {
    [
        "server",
        "--listen",
        listen,
        "--data-dir",
        &dir.to_string_lossy(),
        "--size",
        &size.to_string(),
        "--lease-ms",
        "1000",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends one control request to a link and reads its answer.
pub fn control(addr: SocketAddr, line: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    if answer.contains("CODE=200") {
        Ok(answer.trim().to_string())
    } else {
        Err(io::Error::other(format!("link answered {answer:?} to {line}")))
    }
}

/// The soak's folder: the server's data, the nodes' logs, the history.
pub fn folder(out: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let data = out.join("data");
    let logs = out.join("logs");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&logs)?;
    Ok((data, logs))
}
