//! Rules for what a message may carry.

/// The longest text message, in Unicode scalar values (what people call characters).
pub const MAX_TEXT_CHARS: usize = 4096;

/// Why a message body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the message is empty")]
    Empty,
    #[error("the message has {0} characters; at most {MAX_TEXT_CHARS} are allowed")]
    TooLong(usize),
    #[error("the message contains a control character that is not allowed")]
    ControlCharacter,
}

/// Checks a text message body: not blank, at most [`MAX_TEXT_CHARS`] characters, and no
/// control characters other than line breaks and tabs.
pub fn validate_text(text: &str) -> Result<(), ContentError> {
    if text.trim().is_empty() {
        return Err(ContentError::Empty);
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ContentError::TooLong(chars));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(ContentError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_counted_in_characters_not_bytes() {
        let persian = "س".repeat(MAX_TEXT_CHARS);
        assert!(persian.len() > MAX_TEXT_CHARS);
        assert_eq!(validate_text(&persian), Ok(()));
        assert_eq!(validate_text(&format!("{persian}x")), Err(ContentError::TooLong(MAX_TEXT_CHARS + 1)));
    }

    #[test]
    fn blank_and_control_characters_are_refused() {
        assert_eq!(validate_text(" \n "), Err(ContentError::Empty));
        assert_eq!(validate_text("a\u{0007}b"), Err(ContentError::ControlCharacter));
        assert_eq!(validate_text("line one\nline two"), Ok(()));
    }
}
