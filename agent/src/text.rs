//! Text shaping for what DittoFS sends back (error texts, adapter types) before it reaches a log line or the
//! status: a leaf, shared by the DittoFS client and the discovery.

use dittofs_api::names;

/// Longest DittoFS error text kept in a message (the status field allows 1024 characters).
pub const MAX_DETAIL: usize = 300;
/// Longest adapter type (a DNS label).
pub const MAX_TYPE_LEN: usize = 63;

/// Control characters dropped, whitespace collapsed, cut to [`MAX_DETAIL`] characters.
pub fn clean(s: &str) -> String {
    let mut out = String::new();
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    truncate_chars(&out, MAX_DETAIL)
}

/// At most `max` characters, with `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Adapter type for names, labels and the status: the Go operator's sanitization (lower-case `[a-z0-9-]`),
/// cut to a DNS label.
pub fn sanitize_type(raw: &str) -> String {
    let s = names::sanitize_adapter_type(raw);
    if s.len() <= MAX_TYPE_LEN {
        return s;
    }
    s[..MAX_TYPE_LEN].trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cleaned_and_bounded() {
        assert_eq!(clean("a\n\tb\u{1b}[31m  c"), "a b[31m c");
        let long = "x".repeat(1000);
        assert_eq!(clean(&long).chars().count(), MAX_DETAIL);
        assert_eq!(truncate_chars("abcdef", 4), "abc…");
    }

    #[test]
    fn types_are_dns_labels() {
        assert_eq!(sanitize_type(&"x".repeat(200)).len(), MAX_TYPE_LEN);
        assert_eq!(sanitize_type("NFS\n\u{1b}[31m"), "nfs-31m");
    }
}
