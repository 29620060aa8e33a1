//! Characters that show nothing, and characters that change how the text around them shows:
//! what a name or a search must not consist of, and what a name must not contain.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` draws nothing on its own: control characters, zero-width spaces and joiners,
/// direction marks, embeddings, overrides and isolates, fillers that render as blank (the
/// Hangul fillers, the Braille blank), variation selectors, tag characters and the like.
/// White space is not included: it is visible as space and handled by trimming.
pub fn is_invisible(c: char) -> bool {
    if c.is_whitespace() {
        return false;
    }
    matches!(c.general_category(), GeneralCategory::Control | GeneralCategory::Format)
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                    // combining grapheme joiner
            | '\u{061C}'                    // Arabic letter mark
            | '\u{115F}' | '\u{1160}'       // Hangul choseong/jungseong fillers
            | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'       // Mongolian variation selectors, vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space, ZWNJ, ZWJ, LRM, RLM
            | '\u{202A}'..='\u{202E}'       // embeddings and overrides
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates
            | '\u{2800}'                    // Braille blank
            | '\u{3164}'                    // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'       // variation selectors
            | '\u{FEFF}'                    // zero-width no-break space (BOM)
            | '\u{FFA0}'                    // half-width Hangul filler
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1D173}'..='\u{1D17A}'     // musical formatting
            | '\u{E0000}'..='\u{E0FFF}'     // tags, variation selectors supplement
        )
}

/// Whether `c` changes the direction of the text after it until a matching terminator:
/// embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI, FSI, PDI).
pub fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether the text has at least one character that shows.
pub fn has_visible(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !is_invisible(c))
}

/// Whether the text is exactly one emoji of the Unicode emoji table: skin tones, ZWJ
/// sequences (👩‍💻), flags and keycaps included; words, several emoji and bare symbols not.
pub fn is_single_emoji(text: &str) -> bool {
    emojis::get(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaction_is_one_emoji() {
        for one in ["👍", "❤️", "❤", "👍🏽", "👩\u{200D}💻", "🇮🇷", "1️⃣", "😂"] {
            assert!(is_single_emoji(one), "{one:?}");
        }
        for not in ["", "سلامسلام", "👍👍", "a", "\u{202E}👍", "👍 ", ":)", "\u{200B}", "ok👍"] {
            assert!(!is_single_emoji(not), "{not:?}");
        }
    }

    #[test]
    fn blank_looking_text_has_nothing_visible() {
        for blank in [
            "",
            " ",
            "\u{200F}\u{200E}",
            "\u{200B}\u{200B}",
            "\u{3164}",
            "\u{115F}\u{1160}",
            "\u{2800}",
            "\0",
            "\u{202E}\u{2066}",
        ] {
            assert!(!has_visible(blank), "{blank:?}");
        }
        for seen in ["علی", "a", "۱", "👍", "نیم\u{200C}فاصله", "\u{200F}سارا"] {
            assert!(has_visible(seen), "{seen:?}");
        }
    }

    #[test]
    fn direction_controls_are_the_embeddings_overrides_and_isolates() {
        assert!(is_direction_control('\u{202E}'));
        assert!(is_direction_control('\u{2067}'));
        assert!(!is_direction_control('\u{200F}'), "a mark changes nothing after it");
        assert!(!is_direction_control('\u{200C}'));
    }
}
