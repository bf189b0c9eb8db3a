//! Waking the open loop on time without burning a core: a `timerfd` armed
//! for the next scheduled send, registered with the poll like a socket.
//! `epoll_wait` counts its timeout in milliseconds; a timerfd fires to the
//! microsecond, so the generator sleeps until the send is due instead of
//! spinning through the last sub-millisecond stretch.
//!
//! Linux only (elsewhere the loop falls back to millisecond timeouts and
//! a short spin). Also here: when the next send pass should wake
//! ([`next_pass`]), and how far apart passes come by default.

use std::io;
use std::time::{Duration, Instant};

/// A send due within this long is waited for by polling without sleeping
/// (a timer would wake later than that).
pub const SPIN: Duration = Duration::from_micros(5);

/// The open loop's send passes come at least this far apart by default:
/// at high rates the requests that fall due meanwhile leave together, each
/// at most this late (plus the wakeup) — and measured from its scheduled
/// time, so the lateness shows in the latency and the send lag instead of
/// being hidden. It bounds the passes, and so the generator's wakeups and
/// writes, to 1/interval a second: on a virtual machine each costs tens of
/// microseconds of kernel time (docs/benchmarks.md). Below 1/interval
/// requests a second each request has its own pass, on time.
pub const DEFAULT_SEND_INTERVAL: Duration = Duration::from_micros(250);

/// When the open loop's next send pass should wake: when the next request
/// is due, but at least `interval` after the last pass's *planned* time.
/// Counting from the plan rather than from when the pass really ran keeps
/// a late wakeup from delaying every later pass too: the lateness does not
/// add up, and a pass that fell behind is followed at once by the next.
pub fn next_pass(next_due: Instant, last_plan: Instant, interval: Duration) -> Instant {
    next_due.max(last_plan + interval)
}

/// The pacer's token in the bench's poll.
pub const PACER: mio::Token = mio::Token(usize::MAX - 9);

#[cfg(target_os = "linux")]
mod sys {
    //! The three system calls, declared by hand (libc is linked anyway).
    #[repr(C)]
    pub struct Timespec {
        pub tv_sec: i64,
        pub tv_nsec: i64,
    }
    #[repr(C)]
    pub struct Itimerspec {
        pub it_interval: Timespec,
        pub it_value: Timespec,
    }
    extern "C" {
        pub fn timerfd_create(clockid: i32, flags: i32) -> i32;
        pub fn timerfd_settime(fd: i32, flags: i32, new: *const Itimerspec, old: *mut Itimerspec) -> i32;
        pub fn read(fd: i32, buf: *mut u8, n: usize) -> isize;
        pub fn close(fd: i32) -> i32;
        pub fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    pub const PR_SET_TIMERSLACK: i32 = 29;
    pub const CLOCK_MONOTONIC: i32 = 1;
    pub const TFD_NONBLOCK: i32 = 0o4000;
    pub const TFD_CLOEXEC: i32 = 0o2000000;
}

/// A one-shot timer the poll can wait on.
#[cfg(target_os = "linux")]
pub struct Pacer {
    fd: i32,
}

#[cfg(target_os = "linux")]
impl Pacer {
    /// A timerfd, registered for READABLE under [`PACER`].
    pub fn new(registry: &mio::Registry) -> io::Result<Pacer> {
        // SAFETY: plain system call with constant arguments; the result
        // is checked.
        let fd = unsafe { sys::timerfd_create(sys::CLOCK_MONOTONIC, sys::TFD_NONBLOCK | sys::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let p = Pacer { fd };
        // The kernel may fire a timer up to the thread's "timer slack" late
        // (50 us by default), to batch wakeups; a pacer wants it on time.
        // SAFETY: prctl with an integer option; failure only leaves the
        // default slack.
        unsafe {
            sys::prctl(sys::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        }
        registry.register(&mut mio::unix::SourceFd(&p.fd), PACER, mio::Interest::READABLE)?;
        Ok(p)
    }

    /// Fires once, `after` from now (at least a nanosecond: zero disarms).
    pub fn arm(&mut self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = sys::Itimerspec {
            it_interval: sys::Timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: sys::Timespec {
                tv_sec: after.as_secs() as i64,
                tv_nsec: i64::from(after.subsec_nanos()),
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call's duration;
        // the old value is not asked for (null).
        let r = unsafe { sys::timerfd_settime(self.fd, 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiration (the fd is edge-triggered in mio: read it
    /// so the next expiry raises a new edge).
    pub fn fired(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer; a
        // nonblocking fd with nothing to read returns EAGAIN, ignored.
        unsafe {
            sys::read(self.fd, buf.as_mut_ptr(), buf.len());
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Pacer {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe {
            sys::close(self.fd);
        }
    }
}

/// Elsewhere: no timer; the loop's millisecond timeouts do.
#[cfg(not(target_os = "linux"))]
pub struct Pacer;

#[cfg(not(target_os = "linux"))]
impl Pacer {
    /// Not available here.
    pub fn new(_: &mio::Registry) -> io::Result<Pacer> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no timerfd"))
    }
    /// Never called.
    pub fn arm(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    /// Never called.
    pub fn fired(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_send_pass_does_not_delay_the_next() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let iv = us(200);
        // At a low rate each request has its own pass, on time.
        assert_eq!(next_pass(t0 + us(1000), t0, iv), t0 + us(1000));
        // At a high rate the passes keep the interval from the last plan.
        assert_eq!(next_pass(t0 + us(10), t0, iv), t0 + us(200));
        // A pass planned at t0 that ran 150 µs late: the next is still
        // planned 200 µs after t0, not after the late run.
        let ran = t0 + us(150);
        let next = next_pass(t0 + us(10), t0, iv);
        assert!(next < ran + iv);
        assert_eq!(next, t0 + us(200));
        // No interval: every pass is when the next request is due.
        assert_eq!(next_pass(t0 + us(10), t0, Duration::ZERO), t0 + us(10));
    }
}
