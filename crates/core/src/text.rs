//! Persian-aware text folding for search and usernames.
//!
//! People type Persian with Arabic keyboards (ي and ك instead of ی and ک), with or without
//! zero-width non-joiners, and with three sets of digits. Search must not care about any of
//! that, so both the indexed text and the query go through [`fold_for_search`].

/// Maps Persian (U+06F0..) and Arabic-Indic (U+0660..) digits to ASCII digits.
pub fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{06F0}'..='\u{06F9}' => char::from_digit(c as u32 - 0x06F0, 10),
        '\u{0660}'..='\u{0669}' => char::from_digit(c as u32 - 0x0660, 10),
        _ => None,
    }
}

/// Folds text for search: Arabic yeh/kaf/teh-marbuta variants to their Persian forms, every
/// digit to ASCII, invisible characters (see [`crate::chars`]) and Arabic diacritics dropped, letters lower-cased,
/// and runs of white space collapsed to one space.
pub fn fold_for_search(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut pending_space = false;
    for c in input.chars() {
        let c = match c {
            '\u{064A}' | '\u{0649}' => '\u{06CC}', // Arabic yeh, alef maksura -> Persian yeh
            '\u{0643}' => '\u{06A9}',              // Arabic kaf -> keheh
            '\u{0629}' => '\u{0647}',              // teh marbuta -> heh
            '\u{0623}' | '\u{0625}' | '\u{0671}' => '\u{0627}', // hamza-carrying alefs -> alef
            '\u{0624}' => '\u{0648}',              // waw with hamza -> waw
            other => ascii_digit(other).unwrap_or(other),
        };
        // What shows nothing (controls such as NUL, zero-width characters, direction marks,
        // fillers), tatweel and harakat carry no meaning for matching.
        if crate::chars::is_invisible(c) || matches!(c, '\u{0640}' | '\u{064B}'..='\u{065F}' | '\u{0670}') {
            continue;
        }
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Whether `haystack` contains `needle` once both are folded for search.
pub fn search_matches(haystack: &str, needle: &str) -> bool {
    fold_for_search(haystack).contains(&fold_for_search(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_fold_to_nothing() {
        assert_eq!(fold_for_search("\0"), "");
        assert_eq!(fold_for_search("\u{3164}\u{200B}\u{202E}\u{2800}"), "");
        assert_eq!(fold_for_search("a\0b"), "ab");
    }

    #[test]
    fn arabic_letters_fold_to_persian() {
        assert_eq!(fold_for_search("كتاب"), fold_for_search("کتاب"));
        assert_eq!(fold_for_search("علي"), "علی");
    }

    #[test]
    fn zero_width_non_joiner_is_ignored() {
        assert_eq!(fold_for_search("می\u{200C}روم"), fold_for_search("میروم"));
        assert!(search_matches("ما می‌رویم به خانه", "میرویم"));
    }

    #[test]
    fn digits_and_case_and_spaces_fold() {
        assert_eq!(fold_for_search("  Hello\t ۱۲٣  World "), "hello 123 world");
    }

    #[test]
    fn unrelated_text_does_not_match() {
        assert!(!search_matches("سلام دنیا", "کتاب"));
    }
}
