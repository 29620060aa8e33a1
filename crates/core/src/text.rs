//! Persian-aware text folding for search and usernames, and which characters show nothing.
//!
//! People type Persian with Arabic keyboards (ي and ك instead of ی and ک), with or without
//! zero-width non-joiners, and with three sets of digits. Search must not care about any of
//! that, so both the indexed text and the query go through [`fold_for_search`].

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Maps Persian (U+06F0..) and Arabic-Indic (U+0660..) digits to ASCII digits.
pub fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{06F0}'..='\u{06F9}' => char::from_digit(c as u32 - 0x06F0, 10),
        '\u{0660}'..='\u{0669}' => char::from_digit(c as u32 - 0x0660, 10),
        _ => None,
    }
}

/// Whether `c` shows nothing on its own and is not white space: control characters, format
/// characters (zero-width spaces and joiners, direction marks, embeddings, overrides and
/// isolates, the byte order mark, tags, ...), the Hangul fillers (U+115F, U+1160, U+3164,
/// U+FFA0), variation selectors, the combining grapheme joiner, the invisible Khmer vowels
/// and the blank Braille pattern (U+2800). A name or a query made only of these looks empty.
pub fn is_invisible(c: char) -> bool {
    if c.is_whitespace() {
        return false;
    }
    matches!(c.general_category(), GeneralCategory::Control | GeneralCategory::Format)
        || matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{034F}' // combining grapheme joiner
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}' // Mongolian free variation selectors
            | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' // variation selectors
            | '\u{2800}' // Braille pattern blank
        )
}

/// Whether `text` has a character that shows: one that is neither white space nor
/// [invisible](is_invisible).
pub fn has_visible(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !is_invisible(c))
}

/// Folds text for search: Arabic yeh/kaf/teh-marbuta variants to their Persian forms, every
/// digit to ASCII, [invisible](is_invisible) characters, tatweel and Arabic diacritics
/// dropped, letters lower-cased, and runs of white space collapsed to one space. A query that
/// folds to nothing has nothing to look for.
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
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        // Invisible characters (zero-width non-joiners, direction marks, NUL, ...), tatweel
        // and harakat carry no meaning for matching.
        if is_invisible(c) || matches!(c, '\u{0640}' | '\u{064B}'..='\u{065F}' | '\u{0670}') {
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
    fn queries_of_invisible_characters_fold_to_nothing() {
        for blank in [
            "\0",
            "\0\0 \u{7}",
            "\u{200B}\u{200C}\u{200D}",
            "\u{200E}\u{200F}\u{061C}",
            "\u{202E}\u{2066}\u{2069}",
            "\u{3164}",
            "\u{115F}\u{1160}",
            "\u{FFA0}",
            "\u{2800}\u{FE0F}\u{034F}",
            "\u{FEFF}\u{2060}\u{00AD}",
            "\u{E0041}",
            " \t\u{00A0}\u{3000} ",
        ] {
            assert_eq!(fold_for_search(blank), "", "{blank:?}");
            assert!(!has_visible(blank), "{blank:?}");
        }
        assert_eq!(fold_for_search("\0کتاب\u{3164}"), "کتاب");
    }

    #[test]
    fn visible_text_is_seen_as_such() {
        for text in ["a", "سلام", "۱", "👍", "\u{200F}علی", ".", "\u{3164}x"] {
            assert!(has_visible(text), "{text:?}");
        }
        assert!(!is_invisible(' ') && !is_invisible('\n'), "white space is not invisible");
        assert!(is_invisible('\u{202E}') && is_invisible('\0') && is_invisible('\u{200C}'));
    }

    #[test]
    fn unrelated_text_does_not_match() {
        assert!(!search_matches("سلام دنیا", "کتاب"));
    }
}
