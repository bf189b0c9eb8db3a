//! Starting and finishing a nonblocking connect: the one way the proxy's
//! upstream, the client and the bench open a connection.

use super::{Conn, ConnEvent, ConnectOutcome, State};
use crate::trace_event;
use mio::net::TcpStream;
use mio::{Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

impl<X> Conn<X> {
    /// Starts a nonblocking connect to `addr` and registers the socket:
    /// `connect()` returns EINPROGRESS, and [`Conn::on_connect_event`]
    /// finishes it when the socket turns WRITABLE.
    pub fn connect(
        addr: SocketAddr,
        token: Token,
        gen: u64,
        role: &'static str,
        registry: &Registry,
        now: Instant,
        ext: X,
    ) -> io::Result<Self> {
        let peer = Some(addr);
        trace_event!(role, token, "CONNECT_START", "connect() in progress (EINPROGRESS)");
        let sock = TcpStream::connect(addr)?;
        let mut conn = Conn::new(sock, token, gen, role, State::Connecting { since: now }, now, ext);
        conn.peer = peer;
        conn.register(registry)?;
        Ok(conn)
    }

    /// Finishes a nonblocking connect after an event, the way mio documents
    /// it: `take_error()` for a failure, then `peer_addr()`, where
    /// `NotConnected` means "still connecting". On success the connection
    /// is `Open`, with TCP_NODELAY (requests are small and latency matters).
    pub fn on_connect_event(&mut self, registry: &Registry) -> ConnectOutcome {
        let settled = match self.sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match self.sock.peer_addr() {
                Ok(addr) => Ok(addr),
                Err(e) if matches!(e.kind(), io::ErrorKind::NotConnected | io::ErrorKind::WouldBlock) => {
                    return ConnectOutcome::Pending
                }
                Err(e) => Err(e),
            },
        };
        match settled {
            Ok(addr) => {
                self.peer = Some(addr);
                let _ = self.sock.set_nodelay(true);
                if let Ok(local) = self.sock.local_addr() {
                    trace_event!(self.role, self.token, "CONNECTED", "local {local}, peer {addr}");
                }
                if let Err(e) = self.transition(ConnEvent::Connected, "connect completed") {
                    return ConnectOutcome::Failed(e);
                }
                if let Err(e) = self.update_interest(registry) {
                    return ConnectOutcome::Failed(e);
                }
                ConnectOutcome::Connected
            }
            Err(e) => {
                trace_event!(self.role, self.token, "CONNECT_FAILED", "{e}");
                ConnectOutcome::Failed(e)
            }
        }
    }
}
