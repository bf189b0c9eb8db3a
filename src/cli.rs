//! Hand-written argument parsing: `--flag VALUE`, `--flag=VALUE` and bare
//! switches, checked against each subcommand's table of flags, with
//! `--help` everywhere. A bad flag or value is a [`CliError::Usage`]
//! (exit code 2).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// One flag a subcommand accepts.
pub struct Flag {
    /// Its name, without the dashes.
    pub name: &'static str,
    /// The placeholder of its value, or `None` for a switch.
    pub value: Option<&'static str>,
    /// One line of help (the default goes here too).
    pub help: &'static str,
}

/// Shorthand for a flag that takes a value.
pub const fn opt(name: &'static str, value: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        value: Some(value),
        help,
    }
}

/// Shorthand for a switch.
pub const fn switch(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        value: None,
        help,
    }
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    /// `--help` was asked: the text to print (exit 0).
    Help(String),
    /// A mistake: the message to print (exit 2).
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help(s) | CliError::Usage(s) => f.write_str(s),
        }
    }
}

/// A subcommand's parsed arguments.
#[derive(Debug)]
pub struct Parsed {
    values: HashMap<&'static str, String>,
    /// The words that are not flags, in order (after the first one, every
    /// word is taken as is, so `put 1=-3` and `raw 'OP=..'` pass through).
    pub positional: Vec<String>,
}

/// Builds the `--help` text of a subcommand.
pub fn help_text(usage: &str, about: &str, flags: &[Flag]) -> String {
    let mut s = format!("usage: {usage}\n\n{about}\n\noptions:\n");
    for f in flags {
        let left = match f.value {
            Some(v) => format!("--{} {v}", f.name),
            None => format!("--{}", f.name),
        };
        s.push_str(&format!("  {left:<28} {}\n", f.help));
    }
    s.push_str(&format!("  {:<28} {}\n", "--help", "print this help"));
    s
}

/// Parses `args` against `flags`. `allow_positional` says whether words
/// other than flags are accepted.
pub fn parse(
    args: &[String],
    usage: &str,
    about: &str,
    flags: &[Flag],
    allow_positional: bool,
) -> Result<Parsed, CliError> {
    let mut values = HashMap::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if !positional.is_empty() {
            positional.push(a.clone());
            continue;
        }
        if a == "--help" || a == "-h" {
            return Err(CliError::Help(help_text(usage, about, flags)));
        }
        let Some(body) = a.strip_prefix("--") else {
            if allow_positional {
                positional.push(a.clone());
                continue;
            }
            return Err(CliError::Usage(format!("unexpected argument {a:?}\nusage: {usage}")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(flag) = flags.iter().find(|f| f.name == name) else {
            return Err(CliError::Usage(format!(
                "unknown flag --{name}\nusage: {usage} (see --help)"
            )));
        };
        let value = match (flag.value, inline) {
            (None, None) => String::new(),
            (None, Some(_)) => return Err(CliError::Usage(format!("--{name} takes no value"))),
            (Some(_), Some(v)) => v,
            (Some(ph), None) => {
                let Some(v) = args.get(i) else {
                    return Err(CliError::Usage(format!("--{name} needs a value {ph}")));
                };
                i += 1;
                v.clone()
            }
        };
        values.insert(flag.name, value);
    }
    Ok(Parsed { values, positional })
}

impl Parsed {
    /// Whether a flag (or switch) was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A flag's raw value.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|s| s.as_str())
    }

    /// A flag's value parsed as `T`, or `default` when absent.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, CliError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| CliError::Usage(format!("bad value for --{name}: {v:?}"))),
        }
    }

    /// Like `get`, and the value must be at least `min`.
    pub fn get_min<T: FromStr + PartialOrd + fmt::Display>(
        &self,
        name: &str,
        default: T,
        min: T,
    ) -> Result<T, CliError> {
        let v = self.get(name, default)?;
        if v < min {
            return Err(CliError::Usage(format!("--{name} must be at least {min}")));
        }
        Ok(v)
    }
}

/// `--log-level` and `--trace` resolved to a level filter.
pub fn log_level(p: &Parsed) -> Result<log::LevelFilter, CliError> {
    if p.has("trace") {
        return Ok(log::LevelFilter::Trace);
    }
    let v = p.raw("log-level").unwrap_or("info");
    v.parse().map_err(|_| {
        CliError::Usage(format!(
            "bad value for --log-level: {v:?} (error, warn, info, debug, trace, off)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[opt("size", "N", "entries"), switch("timing", "show times")];

    fn p(args: &[&str]) -> Result<Parsed, CliError> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, "t [options]", "test", FLAGS, true)
    }

    #[test]
    fn flags_values_and_positionals() {
        let r = p(&["--size", "7", "--timing", "put", "1=-3", "--size"]).unwrap();
        assert_eq!(r.get("size", 10usize).unwrap(), 7);
        assert!(r.has("timing"));
        assert_eq!(r.positional, vec!["put", "1=-3", "--size"]);
        assert_eq!(p(&["--size=9"]).unwrap().get("size", 0usize).unwrap(), 9);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(matches!(p(&["--nope"]), Err(CliError::Usage(_))));
        assert!(matches!(p(&["--size"]), Err(CliError::Usage(_))));
        assert!(matches!(p(&["--timing=1"]), Err(CliError::Usage(_))));
        assert!(matches!(
            p(&["--size", "x"]).unwrap().get("size", 0usize),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(p(&["--help"]), Err(CliError::Help(_))));
    }
}
