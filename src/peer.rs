//! Who may take part in coherence (docs/coherence.md, "Trust"): the peer
//! secret that a server and its proxies share (`--peer-secret-file`), how
//! it is compared, and how it is kept out of logs and traces.
//!
//! A proxy presents the secret once per connection, in the `KEY` field of
//! its first `OP=LEASE`. Only a connection that presented it may hold a
//! lease or confirm invalidations; every other connection is an ordinary
//! client, which can never make a write wait. A server without a secret
//! grants leases to loopback peers only (as Redis's protected mode serves
//! only loopback clients until a password is set).

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// Shortest secret accepted, in bytes: a guessable one would make the
/// trust boundary decorative.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest secret accepted (it travels in one message).
pub const MAX_SECRET_BYTES: usize = 1024;

/// A secret, from a file or from the wire. Its `Debug` never shows it, and
/// comparing two takes the same time wherever they differ.
#[derive(Clone, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Reads a secret file: its content with surrounding whitespace
    /// trimmed, at least [`MIN_SECRET_BYTES`] printable ASCII characters
    /// other than `;` (the protocol's field separator).
    pub fn from_file(path: &Path) -> io::Result<Secret> {
        let raw = std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("peer secret file {}: {e}", path.display())))?;
        let s = raw.trim_ascii();
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer secret file {}: {why}", path.display()),
            )
        };
        if s.len() < MIN_SECRET_BYTES {
            return Err(bad(&format!(
                "the secret has {} bytes, at least {MIN_SECRET_BYTES} are needed (e.g. `head -c 24 /dev/urandom | base64 > FILE`)",
                s.len()
            )));
        }
        if s.len() > MAX_SECRET_BYTES {
            return Err(bad(&format!("the secret is over {MAX_SECRET_BYTES} bytes")));
        }
        if !s.iter().all(|&b| b.is_ascii_graphic() && b != b';') {
            return Err(bad("the secret must be printable ASCII without spaces or ';'"));
        }
        if let Some(mode) = readable_by_others(path) {
            log::warn!(
                "peer secret file {}: other users may read it (mode {mode:o}): chmod 600 it",
                path.display()
            );
        }
        Ok(Secret(s.to_vec()))
    }

    /// A secret as a peer presented it.
    pub fn from_wire(v: &[u8]) -> Secret {
        Secret(v.to_vec())
    }

    /// The bytes to send (the proxy's `KEY` field).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether `presented` is this secret. The time taken depends on the
    /// lengths only, not on where the bytes differ.
    pub fn matches(&self, presented: &Secret) -> bool {
        let (a, b) = (&self.0, &presented.0);
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(other)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// The file's mode when users other than its owner may read or write it
/// (then the secret is warned of, as ssh does of a key).
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Whether a connection from `peer` may hold a lease on a server without
/// a secret: loopback peers only.
pub fn loopback(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| p.ip().is_loopback() || p.ip().to_canonical().is_loopback())
}

/// A message as a trace or log may show it: the value of any `KEY` field
/// replaced by `(hidden)`. Borrowed (no copy) when there is none.
pub fn redact(body: &[u8]) -> Cow<'_, [u8]> {
    let has_key = body.windows(3).any(|w| w.eq_ignore_ascii_case(b"KEY"));
    if !has_key {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    for (n, field) in body.split(|&b| b == b';').enumerate() {
        if n > 0 {
            out.push(b';');
        }
        let key = field.iter().position(|&b| b == b'=').map(|eq| &field[..eq]);
        if key.is_some_and(|k| k.trim_ascii().eq_ignore_ascii_case(b"KEY")) {
            out.extend_from_slice(b"KEY=(hidden)");
        } else {
            out.extend_from_slice(field);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("tablecache-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "  0123456789abcdef==\n").unwrap();
        let s = Secret::from_file(&f).unwrap();
        assert_eq!(s.expose(), b"0123456789abcdef==");
        assert_eq!(format!("{s:?}"), "Secret(hidden)", "never shown");
        // The bounds themselves are allowed.
        for good in ["0123456789abcdef".to_string(), "y".repeat(MAX_SECRET_BYTES)] {
            std::fs::write(&f, &good).unwrap();
            assert_eq!(Secret::from_file(&f).unwrap().expose(), good.as_bytes());
        }
        for bad in [
            "short",
            "0123456789abcde",
            "0123456789abcdef;x",
            "0123456789 abcdefgh",
            &"x".repeat(1025),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = Secret::from_file(&f).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad}");
            assert!(!e.to_string().contains(bad), "the error does not repeat the secret");
        }
        assert_eq!(
            Secret::from_file(&dir.join("none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        use std::os::unix::fs::PermissionsExt;
        for (mode, shared) in [(0o600, None), (0o700, None), (0o644, Some(0o644)), (0o620, Some(0o620))] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&f), shared, "{mode:o}");
        }
        assert_eq!(readable_by_others(&dir.join("none")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_match_only_whole() {
        let s = Secret::from_wire(b"0123456789abcdef");
        assert!(s.matches(&Secret::from_wire(b"0123456789abcdef")));
        assert!(!s.matches(&Secret::from_wire(b"0123456789abcdeF")));
        assert!(!s.matches(&Secret::from_wire(b"0123456789abcde")));
        assert!(!s.matches(&Secret::from_wire(b"")));
        // Two bytes that differ the same way do not cancel out.
        assert!(!s.matches(&Secret::from_wire(b"1023456789abcdef")));
        assert_ne!(s, Secret::default());
    }

    #[test]
    fn only_loopback_peers_without_a_secret() {
        assert!(loopback(Some("127.0.0.1:5".parse().unwrap())));
        assert!(loopback(Some("127.8.9.1:5".parse().unwrap())));
        assert!(loopback(Some("[::1]:5".parse().unwrap())));
        assert!(loopback(Some("[::ffff:127.0.0.1]:5".parse().unwrap())));
        assert!(!loopback(Some("10.0.0.1:5".parse().unwrap())));
        assert!(!loopback(Some("[::ffff:10.0.0.1]:5".parse().unwrap())));
        assert!(!loopback(None));
    }

    #[test]
    fn traces_never_show_a_key() {
        assert_eq!(&*redact(b"OP=GET;IND=1"), b"OP=GET;IND=1");
        assert!(matches!(redact(b"OP=GET;IND=1"), Cow::Borrowed(_)));
        assert_eq!(&*redact(b"OP=LEASE;KEY=s3cr3t;X=1"), b"OP=LEASE;KEY=(hidden);X=1");
        assert_eq!(&*redact(b"OP=LEASE; key =s3cr3t"), b"OP=LEASE;KEY=(hidden)");
        assert_eq!(&*redact(b"OP=LEASE;MONKEY=1"), b"OP=LEASE;MONKEY=1");
    }
}
