//! `--preload`: setting every key of a run at its target first, in the
//! target's protocol, so that GETs find values. Blocking I/O on purpose:
//! it runs before the measured loop starts.

use super::load::invalid;
use super::wire::{self, Protocol};
use crate::buffer::Buffer;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Sets keys `0..keys` at `addr` (value: the index), pipelined a thousand
/// at a time, before the measured run; a reply waited for longer than
/// `timeout` (`--timeout`) ends it with an error saying so.
pub(super) fn preload(addr: SocketAddr, proto: Protocol, keys: u64, timeout: Duration) -> io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut enc = wire::Encoder::default();
    let mut out = Buffer::new();
    let mut input: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut k = 0;
    while k < keys {
        let n = (keys - k).min(1000);
        out.clear();
        for i in k..k + n {
            enc.encode(proto, &mut out, crate::proto::Op::Put, &[i as i64], &[i as i64]);
        }
        s.write_all(out.data())?;
        let mut answered = 0;
        while answered < n {
            let stored = wire::Expect {
                op: crate::proto::Op::Put,
                keys: 1,
                preloaded: false,
            };
            match wire::reply(proto, &input, stored) {
                Some((len, err)) => {
                    if err.is_some() {
                        return Err(invalid(format!(
                            "preload: {addr} refused a write: {}",
                            String::from_utf8_lossy(&input[..len]).trim()
                        )));
                    }
                    input.drain(..len);
                    answered += 1;
                }
                None => match s.read(&mut chunk).map_err(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "preload: {addr} answered nothing for {} ms ({} of {keys} keys set; the right --protocol?)",
                            timeout.as_millis(),
                            k + answered
                        ),
                    ),
                    _ => e,
                })? {
                    0 => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "preload: connection closed",
                        ))
                    }
                    r => input.extend_from_slice(&chunk[..r]),
                },
            }
        }
        k += n;
    }
    Ok(())
}
