//! The emulator's log, in the real server's line formats so tools that read DittoFS logs read ours.
//!
//! Text: `[2006-01-02 15:04:05] [INFO] msg key=value …` (`internal/logger/handler_text.go`);
//! JSON: slog's `{"time":…,"level":…,"msg":…,key:value}`. The benchmark counts `API request completed` at INFO.

use std::{io::Write, sync::Mutex};

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

pub struct Log {
    min: Level,
    format: LogFormat,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("min", &self.min).field("format", &self.format).finish_non_exhaustive()
    }
}

impl Log {
    /// Opens `output` (`stdout`, `stderr` or a file path, appended to; its directory is created).
    pub fn open(level: &str, format: LogFormat, output: &str) -> std::io::Result<Log> {
        let out: Box<dyn Write + Send> = match output {
            "stdout" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            path => {
                if let Some(dir) = std::path::Path::new(path).parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        Ok(Log { min: Level::parse(level), format, out: Mutex::new(out) })
    }

    pub fn enabled(&self, level: Level) -> bool {
        level >= self.min
    }

    pub fn write(&self, level: Level, msg: &str, attrs: &[(&str, &str)]) {
        if !self.enabled(level) {
            return;
        }
        let line = match self.format {
            LogFormat::Text => {
                let mut line = format!("[{}] [{}] {msg}", jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S"), level.name());
                for (k, v) in attrs {
                    line.push_str(&format!(" {k}={v}"));
                }
                line
            }
            LogFormat::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert("time".into(), jiff::Timestamp::now().to_string().into());
                obj.insert("level".into(), level.name().into());
                obj.insert("msg".into(), msg.into());
                for (k, v) in attrs {
                    obj.insert((*k).into(), (*v).into());
                }
                serde_json::Value::Object(obj).to_string()
            }
        };
        let mut out = self.out.lock().expect("log lock");
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    pub fn debug(&self, msg: &str, attrs: &[(&str, &str)]) {
        self.write(Level::Debug, msg, attrs)
    }
    pub fn info(&self, msg: &str, attrs: &[(&str, &str)]) {
        self.write(Level::Info, msg, attrs)
    }
    pub fn warn(&self, msg: &str, attrs: &[(&str, &str)]) {
        self.write(Level::Warn, msg, attrs)
    }
    pub fn error(&self, msg: &str, attrs: &[(&str, &str)]) {
        self.write(Level::Error, msg, attrs)
    }
}
