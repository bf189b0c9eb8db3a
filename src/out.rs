//! Writing to standard output the way Unix tools do: when the reader goes
//! away (`tablecache demo | head -3`), the write fails with EPIPE (Rust
//! ignores SIGPIPE), and the program ends quietly with status 0 instead of
//! panicking in `println!`.

use std::fmt;
use std::io::{self, Write};

/// Directories to remove if the program ends on a closed pipe (the demo's
/// data directory).
static CLEANUP: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes `dir` too if the program ends on a closed stdout.
pub fn remove_at_exit(dir: &std::path::Path) {
    if let Ok(mut v) = CLEANUP.lock() {
        v.push(dir.to_path_buf());
    }
}

/// Writes `args` to stdout (flushed); exits with status 0 if stdout is a
/// closed pipe.
pub fn write(args: fmt::Arguments) {
    let mut out = io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| out.flush());
    if let Err(e) = r {
        if e.kind() == io::ErrorKind::BrokenPipe {
            if let Ok(dirs) = CLEANUP.lock() {
                for d in dirs.iter() {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
            std::process::exit(0);
        }
    }
}

/// `println!` that ends the program quietly when stdout's reader is gone.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` (flushed) that ends the program quietly when stdout's reader is
/// gone.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}
