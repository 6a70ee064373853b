//! Text on its way to a terminal: whatever a teammate, a service or a store row put in it, no
//! control character gets through to drive the terminal (escape sequences, carriage returns).

use std::borrow::Cow;

/// `text` with every control character but newline and tab replaced by `?`.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '?' } else { c }).collect())
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn nothing_printed_can_drive_the_terminal() {
        assert_eq!(terminal_safe("plain\nline\tx"), "plain\nline\tx");
        assert_eq!(terminal_safe("a\u{1b}]0;owned\u{7}b\rc\u{9b}2J"), "a?]0;owned?b?c?2J");
    }
}
