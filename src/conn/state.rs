//! A connection's lifecycle as data: its states, the events that move
//! it, and the one table of moves (`State::next`), pure; the diagram is in
//! `mod.rs`, the syscalls behind each state in docs/socket-states.md.

use std::time::Instant;

/// The lifecycle of a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `connect()` returned EINPROGRESS; waiting for WRITABLE, then
    /// `take_error()` and `peer_addr()` say whether it worked.
    Connecting {
        /// When the connect started (for the connect timeout).
        since: Instant,
    },
    /// Connected: reading requests and writing replies.
    Open,
    /// Half-closed: the peer sent FIN (a read returned 0) but can still
    /// read. Replies still owed are written, then the connection closes.
    ReadClosed,
    /// The node is stopping: no more requests are read; close once the
    /// output is written.
    Closing,
    /// Done sending: the sending side is shut (FIN after the last bytes
    /// written); what the peer still sends is read and dropped until it
    /// closes. A node closing with requests left unread lingers (closing
    /// at once would make the kernel answer the unread bytes with a reset,
    /// which destroys the replies still on their way to the peer); so do a
    /// client that ends politely and a proxy's upstream connection drained
    /// after a reset.
    Lingering,
    /// Deregistered; the socket is dropped with the connection.
    Closed,
}

/// What moves a connection from one [`State`] to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// A nonblocking connect completed.
    Connected,
    /// A read returned 0: the peer will send nothing more.
    PeerFin,
    /// The node will close once what is owed is written.
    Stop,
    /// The sending side is shut (`shutdown(SHUT_WR)`): drain what the
    /// peer still sends before closing.
    Linger,
    /// Deregistered and dropped.
    Close,
}

impl State {
    /// The name used in logs, traces and docs.
    pub fn name(&self) -> &'static str {
        match self {
            State::Connecting { .. } => "Connecting",
            State::Open => "Open",
            State::ReadClosed => "ReadClosed",
            State::Closing => "Closing",
            State::Lingering => "Lingering",
            State::Closed => "Closed",
        }
    }

    /// The state `event` leads to, or `None` for a move the lifecycle does
    /// not have. Exhaustive on purpose: a new state or event must be placed
    /// in this table before the code compiles.
    pub fn next(self, event: ConnEvent) -> Option<State> {
        use ConnEvent::*;
        use State::*;
        match (self, event) {
            (Connecting { .. }, Connected) => Some(Open),
            (Open, PeerFin) => Some(ReadClosed),
            (Open, Stop) => Some(Closing),
            // Done sending: a node closing with requests unread, a client
            // ending politely (even after the peer's FIN), a drained
            // upstream connection.
            (Open | ReadClosed | Closing, Linger) => Some(Lingering),
            (Connecting { .. } | Open | ReadClosed | Closing | Lingering, Close) => Some(Closed),
            (Connecting { .. }, PeerFin | Stop | Linger)
            | (Open, Connected)
            | (ReadClosed, Connected | PeerFin | Stop)
            | (Closing, Connected | PeerFin | Stop)
            | (Lingering, Connected | PeerFin | Stop | Linger)
            | (Closed, Connected | PeerFin | Stop | Linger | Close) => None,
        }
    }
}
