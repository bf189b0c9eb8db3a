//! An old connection the server may still be reading, after a reset with
//! writes in flight: shut for writing and read until the server closes it,
//! so the service knows when those writes can no longer land.

use super::*;

impl Upstream {
    /// Resets a connection the server may still be reading (it timed out,
    /// or answered out of step). If writes are in flight, they may yet be
    /// applied after the proxy reconnects and reads the old values on the
    /// new connection: so the old connection is shut for writing and kept,
    /// and read until the server closes it, and the service is told
    /// (`Draining`, then `Settled`) so that it caches nothing those writes
    /// may change meanwhile.
    pub(super) fn reset_live(&mut self, code: u16, why: &str, now: Instant) {
        let writes = self
            .inflight
            .iter()
            .any(|r| matches!(r.kind, UpKind::Put(..) | UpKind::Clr));
        if writes {
            if let Some(mut c) = self.conn.take() {
                let lingering = self.draining.is_none()
                    && c.retoken(&self.registry, DRAINING).is_ok()
                    && c.linger(
                        "shut for writing, reading until the server closes",
                        "drained after a reset with writes in flight",
                    )
                    .is_ok();
                if lingering {
                    self.draining = Some(c);
                    self.out.push(Plain::Draining);
                } else {
                    c.close(&self.registry, why);
                    self.out.push(Plain::DrainLost);
                }
            }
        }
        self.reset(code, why, now);
    }

    /// An event on the draining connection: read and drop what the server
    /// still sends; its EOF (or an error) means it is done with it.
    pub fn on_drain_event(&mut self) {
        let Some(c) = self.draining.as_mut() else { return };
        let (_, outcome) = c.discard_input(&mut self.scratch, usize::MAX);
        if matches!(outcome, ReadOutcome::Eof | ReadOutcome::Error(_)) {
            if let Some(mut c) = self.draining.take() {
                c.close(&self.registry, "drained");
            }
            info!("proxy upstream {}: the old connection is drained", self.addr);
            self.out.push(Plain::Settled);
        }
    }
}
