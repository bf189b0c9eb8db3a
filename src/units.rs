//! Values people type on the command line that need more than a number:
//! durations with units (`500ms`, `2s`, `1m`), and counts checked against
//! the memory they would take before anything is allocated. Pure but for
//! reading `/proc/meminfo`.

use std::time::Duration;

/// Parses a duration: a number with a unit (`us`, `ms`, `s`, `m`, `h`), or
/// a plain number of seconds. At most a day; never negative or NaN.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use us, ms, s, m or h)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 2s, 1m, or seconds)"))?;
    let secs = v * scale;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?} is more than a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Bytes of memory this machine has free for a new allocation (from
/// `MemAvailable`), or `None` where that cannot be read.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// Checks that `count` items of `each` bytes fit in half of `available`
/// bytes (or of 1 GiB when unknown): else a usage error naming `flag`
/// and the largest count that would.
pub fn fits(flag: &str, count: u64, each: u64, available: Option<u64>) -> Result<(), String> {
    let room = available.unwrap_or(1 << 30) / 2;
    let max = room / each.max(1);
    if count <= max {
        Ok(())
    } else {
        Err(format!(
            "{flag} {count} would take {} MiB of memory at {each} bytes each; this machine has room for at most {max}",
            count.saturating_mul(each) >> 20
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_and_without_units() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(parse_duration("2"), Ok(ms(2000)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("0.5"), Ok(ms(500)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration(" 3 s "), Ok(ms(3000)));
        assert!(parse_duration("2 fortnights").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("25h").unwrap_err().contains("more than a day"));
        assert!(parse_duration("1.2.3").is_err());
    }

    #[test]
    fn free_memory_is_read_where_linux_says_it() {
        if std::path::Path::new("/proc/meminfo").exists() {
            // Any machine that runs the tests has more than a megabyte.
            assert!(available_memory().is_some_and(|m| m > 1 << 20));
        }
    }

    #[test]
    fn counts_fit_in_half_of_what_is_free() {
        assert_eq!(fits("--keys", 100, 8, Some(1600)), Ok(()));
        let e = fits("--keys", 101, 8, Some(1600)).unwrap_err();
        assert!(e.contains("--keys 101") && e.contains("at most 100"), "{e}");
        assert!(fits("--keys", u64::MAX, 8, None).is_err());
        assert!(fits("--keys", 1 << 20, 8, None).is_ok());
    }
}
