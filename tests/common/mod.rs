//! Helpers shared by the integration tests: start nodes in-process on
//! 127.0.0.1:0, and talk to them with plain blocking sockets (the way a
//! student's program would), always with generous timeouts instead of
//! sleeps.
#![allow(dead_code)]

pub mod history;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tablecache::frontend::Limits;
use tablecache::proxy::{Proxy, ProxyConfig};
use tablecache::server::{Server, ServerConfig};
use tablecache::NodeHandle;

/// Upper bound for anything a test waits for; never reached when all is
/// well: 20 s, or `TABLECACHE_TEST_PATIENCE_MS`. Mutation runs shorten it
/// (scripts/mutants.sh), so a mutant that hangs a test is caught sooner;
/// their baseline run checks the suite still passes with it.
pub fn patience() -> Duration {
    static P: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *P.get_or_init(|| {
        std::env::var("TABLECACHE_TEST_PATIENCE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(20), Duration::from_millis)
    })
}

pub fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn start_server(size: usize) -> NodeHandle {
    start_server_with(size, Limits::default())
}

pub fn start_server_with(size: usize, limits: Limits) -> NodeHandle {
    server_node(ServerConfig {
        size,
        limits,
        ..Default::default()
    })
}

/// The one in-process server starter: `cfg` on a port of its own, in a
/// fresh system (no earlier life granted leases: no grace).
pub fn server_node(cfg: ServerConfig) -> NodeHandle {
    Server::bind(ServerConfig {
        listen: any_addr(),
        grace: std::time::Duration::ZERO,
        ..cfg
    })
    .expect("bind server")
    .spawn()
    .expect("spawn server")
}

/// The one in-process proxy starter: `cfg` on a port of its own.
pub fn proxy_node(cfg: ProxyConfig) -> NodeHandle {
    Proxy::bind(ProxyConfig {
        listen: any_addr(),
        ..cfg
    })
    .expect("bind proxy")
    .spawn()
    .expect("spawn proxy")
}

/// A proxy of `capacity` entries in front of `upstream`, as configured
/// for [`proxy_node`].
pub fn proxy_to(upstream: SocketAddr, capacity: usize) -> ProxyConfig {
    ProxyConfig {
        upstream,
        capacity,
        ..Default::default()
    }
}

/// Sends signal `sig` (`STOP`, `CONT`, `TERM`, `9`...) to process `pid`
/// with kill(1); whether it was delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// A blocking line-oriented peer.
pub struct Peer {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(patience())).unwrap();
        stream.set_write_timeout(Some(patience())).unwrap();
        stream.set_nodelay(true).unwrap();
        Peer {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one reply line, without its newline.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        let n = self.reader.read_line(&mut s).expect("read reply");
        assert!(n > 0, "connection closed while a reply was expected");
        assert!(s.ends_with('\n'), "reply not terminated: {s:?}");
        s.pop();
        s
    }

    /// Sends one message (adding the newline) and reads its reply.
    pub fn ask(&mut self, msg: &str) -> String {
        self.send(format!("{msg}\n").as_bytes());
        self.line()
    }

    /// True if the peer closed the connection (EOF) within patience().
    pub fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + patience();
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    return false
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        false
    }
}

/// Polls `cond` until it holds or patience() has passed.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience();
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the proxy behind `p` holds a lease (its first LEASE was
/// answered), so that its cache is read from then on.
pub fn wait_leased(p: &mut Peer) {
    wait_until("the proxy holds a lease", || {
        field(&p.ask("OP=STS"), "LEASE_MS").is_some_and(|v| v != "0")
    });
}

/// The value of one field of a reply.
pub fn field(reply: &str, key: &str) -> Option<String> {
    reply
        .split(';')
        .find_map(|f| f.strip_prefix(&format!("{key}=")).map(|v| v.to_string()))
}

pub const BIN: &str = env!("CARGO_BIN_EXE_tablecache");

/// A node started from the binary; killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn_node(args: &[&str]) -> Proc {
    spawn_node_logging(args, Stdio::null())
}

/// Like `spawn_node`, with the node's stderr (its log) going to `stderr`.
pub fn spawn_node_logging(args: &[&str], stderr: Stdio) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stderr(stderr);
    spawn_command(cmd)
}

/// Starts `cmd` (a node binary, maybe behind a shell) and waits for the
/// node's `listening on ADDR` line.
pub fn spawn_command(cmd: Command) -> Proc {
    start(cmd, None)
}

/// Like `spawn_command`, with the node's stderr (its log) in the file
/// `log`: a node that does not start says why in the failure.
pub fn spawn_command_logged(mut cmd: Command, log: &std::path::Path) -> Proc {
    cmd.stderr(std::fs::File::create(log).unwrap());
    start(cmd, Some(log))
}

fn start(mut cmd: Command, log: Option<&std::path::Path>) -> Proc {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read announce line");
    let Some(addr) = line.strip_prefix("listening on ") else {
        let _ = child.wait();
        let said = log.map(|l| std::fs::read_to_string(l).unwrap_or_default());
        panic!("the node did not start: first line {line:?}; its log: {said:?}");
    };
    let addr = addr.trim().to_string();
    assert!(!addr.ends_with(":0"), "the real port is announced: {addr}");
    Proc { child, addr }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`, `KILL`...). A `STOP`
    /// returns once every thread of the node is stopped: `kill` returns
    /// when the signal is sent, and a node woken by bytes meanwhile could
    /// still take them in before it stops.
    pub fn signal(&self, sig: &str) {
        assert!(signal(self.pid(), sig), "kill -{sig}");
        if sig == "STOP" {
            wait_until("the node is stopped", || all_threads_stopped(self.pid()));
        }
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("VmRSS")
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in
/// /proc/PID/task/*/stat).
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, Some('T') | Some('t'))
    })
}

/// Resident memory of process `pid` in KiB, from /proc (`None` once it is
/// gone).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A server binary, then a proxy binary in front of it (both at
/// `--log-level warn`); `proxy_args` are added to the proxy's.
/// A fresh system (no earlier server granted leases: no grace period).
pub fn spawn_server_and_proxy(proxy_args: &[&str]) -> (Proc, Proc) {
    spawn_server_and_proxy_with(&[], proxy_args)
}

/// The same, with `extra` added to the server's arguments.
pub fn spawn_server_and_proxy_with(extra: &[&str], proxy_extra: &[&str]) -> (Proc, Proc) {
    let server = spawn_node(&server_args(extra));
    let proxy = spawn_node(&proxy_args(&server.addr, proxy_extra));
    (server, proxy)
}

/// A proxy binary's arguments: in front of `upstream`, warnings only, then
/// `extra`.
pub fn proxy_args<'a>(upstream: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--log-level",
        "warn",
    ];
    args.extend_from_slice(extra);
    args
}

/// A server binary's arguments: a fresh system (no grace), warnings only,
/// then `extra`.
pub fn server_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    server_args_at("127.0.0.1:0", extra)
}

/// The same, listening on `listen` (a restart on a known address).
pub fn server_args_at<'a>(listen: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["server", "--listen", listen, "--grace-ms", "0", "--log-level", "warn"];
    args.extend_from_slice(extra);
    args
}

/// An address nothing listens on, and nothing else can take while the
/// returned process lives: a TCP socket bound to it but never listening
/// (held by a small Python process), so a connect there is refused.
pub fn dead_addr() -> (SocketAddr, Child) {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("a port");
    (SocketAddr::from(([127, 0, 0, 1], port)), child)
}

/// The peer secret the tests share: one file per test process, written
/// once (`--peer-secret-file`).
pub const SECRET: &str = "tests-0123456789-abcdef";

pub fn secret_file() -> std::path::PathBuf {
    static F: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        // One file for every test process, under target/tmp like TempDir
        // (a static is never dropped): written under a name of this
        // process's and renamed over, so no test reads half of it.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tablecache-secret");
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("peer-secret");
        let tmp = dir.join(format!("peer-secret.{}", std::process::id()));
        std::fs::write(&tmp, format!("{SECRET}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        f
    })
    .clone()
}

/// `secret_file()` as a command-line argument.
pub fn secret_arg() -> String {
    secret_file().to_string_lossy().into_owned()
}

/// A folder for one test's files, removed (with what it holds) when
/// dropped. It lives under cargo's `target/tmp` (`CARGO_TARGET_TMPDIR`),
/// not the system's temp folder: a test that fails before its guard drops
/// still leaves that folder as it found it.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// `target/tmp/tablecache-<name>-<pid>-<n>`, new and empty.
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let d = base.join(format!("tablecache-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A durable server from the binary on `dir` (created if missing), without
/// leases (direct clients only: no grace period after a restart), with
/// `extra` flags. Its log goes to `dir/server.err`, so a server that
/// refuses to start says why in the failure.
pub fn durable(dir: &std::path::Path, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--lease-ms",
        "0",
        "--log-level",
        "warn",
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut cmd = Command::new(BIN);
    cmd.args(&args);
    spawn_command_logged(cmd, &dir.join("server.err"))
}

/// A proxy (from the binary) in front of `upstream`, and a client of it,
/// once the proxy holds a lease.
pub fn leased_proxy(upstream: &str) -> (Proc, Peer) {
    let proxy = spawn_node(&proxy_args(upstream, &[]));
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_leased(&mut c);
    (proxy, c)
}

/// A server with leases on `addr` (port 0 for a new one), durable on
/// `dir` if given.
pub fn leasing(addr: &str, dir: Option<&std::path::Path>) -> Proc {
    let mut args = server_args_at(addr, &["--lease-ms", "1500"]);
    if let Some(d) = dir {
        args.extend(["--data-dir", d.to_str().unwrap()]);
    }
    spawn_node(&args)
}

/// Runs `tablecache demo --trace` with `extra`; its stdout (it must exit 0).
pub fn demo(extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("demo")
        .arg("--trace")
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
