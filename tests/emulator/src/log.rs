//! The emulator's log, in the real server's line formats so tools that read DittoFS logs read ours.
//!
//! Text: `[2006-01-02 15:04:05] [INFO] msg key=value …` in local time (`internal/logger/handler_text.go`);
//! JSON: slog's `{"time":…(RFC 3339 ns, local offset),"level":…,"msg":…,key:value}` with numbers and
//! booleans kept as such.
//! The harness counts `API request completed` lines at INFO.

use std::{fmt, io::Write, sync::Mutex, time::Duration};

use super::config::LogFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse(text: &str) -> Level {
        match text {
            "DEBUG" => Level::Debug,
            "WARN" => Level::Warn,
            "ERROR" => Level::Error,
            _ => Level::Info,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// An attribute value: slog keeps ints as JSON numbers, everything else the server logs is a string.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::Str(s)
    }
}

impl<'a> From<&'a String> for Val<'a> {
    fn from(s: &'a String) -> Self {
        Val::Str(s)
    }
}

impl From<i64> for Val<'_> {
    fn from(n: i64) -> Self {
        Val::Int(n)
    }
}

impl From<bool> for Val<'_> {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Str(s) => f.write_str(s),
            Val::Int(n) => write!(f, "{n}"),
            Val::Bool(b) => write!(f, "{b}"),
        }
    }
}

pub type Attrs<'a> = [(&'a str, Val<'a>)];

pub struct Log {
    min: Level,
    format: LogFormat,
    out: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("min", &self.min).field("format", &self.format).finish_non_exhaustive()
    }
}

impl Log {
    /// Opens `output` (`stdout`, `stderr` or a file path, appended to; its directory is created).
    pub fn open(level: &str, format: LogFormat, output: &str) -> std::io::Result<Log> {
        let out: Box<dyn Write + Send> = match output.to_lowercase().as_str() {
            "stdout" | "" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            _ => {
                if let Some(dir) = std::path::Path::new(output).parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Box::new(std::fs::OpenOptions::new().create(true).append(true).open(output)?)
            }
        };
        Ok(Log { min: Level::parse(level), format, out: Mutex::new(out) })
    }

    pub fn enabled(&self, level: Level) -> bool {
        level >= self.min
    }

    pub fn write(&self, level: Level, msg: &str, attrs: &Attrs) {
        if !self.enabled(level) {
            return;
        }
        let now = jiff::Zoned::now();
        let line = match self.format {
            LogFormat::Text => {
                let mut line = format!("[{}] [{}] {msg}", now.strftime("%Y-%m-%d %H:%M:%S"), level.name());
                for (k, v) in attrs {
                    line.push_str(&format!(" {k}={v}"));
                }
                line
            }
            LogFormat::Json => {
                // A struct-like writer keeps slog's key order (time, level, msg, then attributes as given).
                let offset = match now.offset().seconds() {
                    0 => "Z".to_string(),
                    _ => now.strftime("%:z").to_string(),
                };
                let mut line = String::from("{");
                let mut field = |k: &str, v: serde_json::Value| {
                    if line.len() > 1 {
                        line.push(',');
                    }
                    line.push_str(&format!("{}:{v}", serde_json::Value::from(k)));
                };
                field("time", format!("{}{offset}", now.strftime("%Y-%m-%dT%H:%M:%S%.f")).into());
                field("level", level.name().into());
                field("msg", msg.into());
                for (k, v) in attrs {
                    field(
                        k,
                        match v {
                            Val::Str(s) => (*s).into(),
                            Val::Int(n) => (*n).into(),
                            Val::Bool(b) => (*b).into(),
                        },
                    );
                }
                line.push('}');
                line
            }
        };
        let mut out = self.out.lock().expect("log lock");
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    pub fn debug(&self, msg: &str, attrs: &Attrs) {
        self.write(Level::Debug, msg, attrs)
    }
    pub fn info(&self, msg: &str, attrs: &Attrs) {
        self.write(Level::Info, msg, attrs)
    }
    pub fn warn(&self, msg: &str, attrs: &Attrs) {
        self.write(Level::Warn, msg, attrs)
    }
    pub fn error(&self, msg: &str, attrs: &Attrs) {
        self.write(Level::Error, msg, attrs)
    }
}

/// Go's `time.Duration.String()`: `0s`, `812ns`, `78.967µs`, `1.385558ms`, `1.5s`, `1m2s`, `1h0m5s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let frac = |value: u128, digits: u32| -> String {
        let scale = 10u128.pow(digits);
        let (whole, rest) = (value / scale, value % scale);
        if rest == 0 {
            whole.to_string()
        } else {
            let rest = format!("{rest:0width$}", width = digits as usize);
            format!("{whole}.{}", rest.trim_end_matches('0'))
        }
    };
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let s = frac(n % 60_000_000_000, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(812), "812ns"),
            (Duration::from_nanos(78_967), "78.967µs"),
            (Duration::from_nanos(1_385_558), "1.385558ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(24), "24s"),
            (Duration::from_secs(62), "1m2s"),
            (Duration::from_secs(3605), "1h0m5s"),
            (Duration::from_secs(900), "15m0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }
}
