//! Text helpers shared by the agent and the controller.

/// The longest Event note the API accepts (1 kB).
pub const MAX_EVENT_NOTE_BYTES: usize = 1000;

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(super::truncate("é".repeat(600), 1000).len(), 1000);
        assert_eq!(super::truncate("é".repeat(600), 999).len(), 998);
        assert_eq!(super::truncate("abc".into(), 1000), "abc");
    }
}
