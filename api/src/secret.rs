//! A string that never shows itself: passwords, keys and tokens are held in [`SecretString`], whose
//! `Debug` prints a placeholder, and which has no `Display` or `Serialize`, so it cannot end up in a log
//! line, an error message or the status by accident. Shared by the controller and the agent.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A password or token. Read it only where it is sent, with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it (a request body or an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("SecretString(<empty>)") } else { f.write_str("SecretString(<redacted>)") }
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("hunter2-password");
        assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(SecretString(<redacted>))");
        assert_eq!(s.expose(), "hunter2-password");
        assert_eq!(format!("{:?}", SecretString::default()), "SecretString(<empty>)");
    }
}
