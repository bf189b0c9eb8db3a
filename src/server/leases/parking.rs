//! Writes that must wait (parked): parking one, the next one whose waits
//! are all met, and dropping those of a connection that closed. Each wait
//! is an ACK from a holder, the start's grace, or a departed holder's
//! last lease running out.

use super::*;

impl Leases {
    /// Parks a write that must wait (`waits` from
    /// [`Leases::write_must_wait`]).
    pub fn park(&mut self, key: usize, gen: u64, req: &Request, waits: Vec<Wait>, now: Instant) {
        if req.op == Op::Clr {
            self.pending_all += 1;
        } else {
            for &i in &req.ind {
                *self.pending.entry(i).or_default() += 1;
            }
        }
        self.stats.writes_delayed += 1;
        self.parked.push(Parked {
            key,
            gen,
            req: req.clone(),
            arrived: now,
            waits,
        });
    }

    /// A parked write that may now be applied, if any (call until `None`).
    pub fn next_ready(&mut self, now: Instant) -> Option<Parked> {
        let pos = self
            .parked
            .iter()
            .position(|p| p.waits.iter().all(|&w| self.satisfied(w, now)))?;
        let p = self.parked.remove(pos);
        self.unpark(&p);
        let waited = now.saturating_duration_since(p.arrived).as_micros() as u64;
        self.stats.delay_max_us = self.stats.delay_max_us.max(waited);
        Some(p)
    }

    /// Drops the parked write of a connection that closed (it never
    /// answered, so it may as well never have happened).
    pub fn drop_parked(&mut self, key: usize, gen: u64) {
        while let Some(pos) = self.parked.iter().position(|p| p.key == key && p.gen == gen) {
            let p = self.parked.remove(pos);
            self.unpark(&p);
        }
    }

    fn unpark(&mut self, p: &Parked) {
        if p.req.op == Op::Clr {
            self.pending_all -= 1;
        } else {
            for i in &p.req.ind {
                if let Some(n) = self.pending.get_mut(i) {
                    *n -= 1;
                    if *n == 0 {
                        self.pending.remove(i);
                    }
                }
            }
        }
    }

    fn satisfied(&self, w: Wait, now: Instant) -> bool {
        match w {
            Wait::Grace => now >= self.grace_until,
            // A holder that left had this wait turned into its lease's end.
            Wait::Ack(id, seq) => self.holders.get(&id).is_none_or(|h| h.acked >= seq),
            Wait::Until(t) => now >= t,
        }
    }
}
