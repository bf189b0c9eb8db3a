//! A proxy's session at the server: its LEASE (who may hold one: the
//! trust rule; joining; a resume that keeps its cache when the history is
//! the same) and its ACKs. The leases themselves are `leases.rs`; this
//! file answers the messages. docs/coherence.md, "Trust" and the session.

use super::leases::HolderId;
use super::service::{ServerConn, ServerCore};
use crate::buffer::Buffer;
use crate::conn::Conn;
use crate::framing::Framing;
use crate::proto::{encode_ack, encode_lease_grant, History, Op, Problem};
use log::warn;
use std::time::Instant;

impl ServerCore {
    /// Answers a LEASE: granted (joining the holders, or resuming with the
    /// cache kept), or refused with why.
    pub(super) fn lease(&mut self, conn: &mut Conn<ServerConn>, now: Instant) -> Result<(), Problem> {
        if self.leases.lease().is_zero() {
            return Err(Problem::NotServed(Op::Lease)); // --lease-ms 0
        }
        if conn.framer.framing() != Framing::Line {
            return Err(Problem::LeaseNeedsLines);
        }
        self.check_trusted(conn)?;
        let id = match conn.ext.holder {
            Some(id) => id,
            None => match self.leases.join(conn.token.0, conn.gen, now) {
                Some(id) => id,
                None => {
                    self.leases.stats.refused += 1;
                    return Err(Problem::TooManyProxies);
                }
            },
        };
        conn.ext.holder = Some(id);
        let (seq, sum) = (self.write_seq(), self.history_sum());
        let keep = self.resume(id, now);
        let history = History {
            id: self.data_id,
            seq,
            sum,
        };
        let ms = u64::try_from(self.leases.lease().as_millis()).unwrap_or(u64::MAX);
        encode_lease_grant(&mut conn.output, ms, &history, keep);
        Ok(())
    }

    /// Only a trusted peer may hold a lease: anyone else could make every
    /// write to what it reads wait (docs/coherence.md, "Trust"). It stays
    /// an ordinary client; the first refusal of a connection is logged.
    fn check_trusted(&mut self, conn: &mut Conn<ServerConn>) -> Result<(), Problem> {
        let trusted = conn.ext.holder.is_some()
            || match &self.secret {
                Some(s) => self.req.key.as_ref().is_some_and(|k| s.matches(k)),
                None => crate::peer::loopback(conn.peer),
            };
        if !trusted {
            let why = match (&self.secret, &self.req.key) {
                (Some(_), None) => "LEASE needs KEY, the peer secret",
                (Some(_), Some(_)) => "wrong KEY",
                (None, _) => "without --peer-secret-file only loopback peers hold leases",
            };
            self.leases.stats.refused += 1;
            if !std::mem::replace(&mut conn.ext.refusal_logged, true) {
                let peer = conn.peer.map_or("?".to_string(), |p| p.to_string());
                warn!(
                    "server tok={} peer={peer}: LEASE refused, not a trusted peer: {why}",
                    conn.token.0
                );
            }
            return Err(Problem::NotPeer(why));
        }
        Ok(())
    }

    /// A resuming LEASE (one with an ID): whether the proxy keeps its
    /// cache (`Some(true)`), tracked as holding it again; `None` for a
    /// first LEASE.
    fn resume(&mut self, id: HolderId, now: Instant) -> Option<bool> {
        // A proxy back from a lost connection may keep its cache if it
        // came from this table's history (the same identity, write count
        // and history sum: no write since it last heard them, and no
        // rewind to an earlier write written again), and no write waits
        // on what it holds.
        let (seq, sum) = (self.write_seq(), self.history_sum());
        self.req.id.map(|asked| {
            let size = self.table.size() as i64;
            let same = asked == self.data_id
                && self.req.seq == seq
                && self.req.sum == sum
                && self.req.ind.iter().all(|&i| (0..size).contains(&i));
            if same {
                self.leases.register(id, &self.req.ind, &mut self.nocache, now);
            }
            same && self.nocache.is_empty()
        })
    }

    /// Applies an ACK of the request's SEQ and encodes its reply.
    pub(super) fn ack(&mut self, holder: Option<HolderId>, out: &mut Buffer, now: Instant) -> Result<(), Problem> {
        let id = holder.ok_or(Problem::NoLease)?;
        self.leases.ack(id, self.req.seq)?;
        self.leases.granted(id, now);
        encode_ack(out, self.req.seq, true);
        Ok(())
    }
}
