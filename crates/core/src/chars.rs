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

/// Keeps the direction controls of a text balanced, so that none reaches past the line it is
/// in (into the name, time or next message a client shows beside it): in each line (up to a
/// line or paragraph separator) a terminator without an opener is dropped, PDF closes the
/// last embedding or override unless an isolate was opened after it, PDI closes the last
/// isolate and whatever was opened after it (as the Unicode bidirectional algorithm pairs
/// them), openers deeper than [`MAX_DIRECTION_DEPTH`] are dropped, and what is still open at
/// the end of the line is closed there. Balanced text comes back as it was.
pub fn balance_direction_controls(text: &str) -> std::borrow::Cow<'_, str> {
    #[derive(Clone, Copy, PartialEq)]
    enum Open {
        Embedding,
        Isolate,
    }
    fn close(stack: &mut Vec<Open>, out: &mut String) {
        while let Some(open) = stack.pop() {
            out.push(if open == Open::Isolate { '\u{2069}' } else { '\u{202C}' });
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<Open> = Vec::new();
    for c in text.chars() {
        match c {
            '\u{202A}' | '\u{202B}' | '\u{202D}' | '\u{202E}' | '\u{2066}'..='\u{2068}' => {
                if stack.len() < MAX_DIRECTION_DEPTH {
                    stack.push(if matches!(c, '\u{2066}'..='\u{2068}') { Open::Isolate } else { Open::Embedding });
                    out.push(c);
                }
            }
            '\u{202C}' => {
                if stack.last() == Some(&Open::Embedding) {
                    stack.pop();
                    out.push(c);
                }
            }
            '\u{2069}' => {
                if let Some(at) = stack.iter().rposition(|o| *o == Open::Isolate) {
                    // Embeddings opened inside the isolate end with it.
                    let inner = stack.split_off(at + 1);
                    out.extend(inner.iter().rev().map(|_| '\u{202C}'));
                    stack.pop();
                    out.push(c);
                }
            }
            '\n' | '\r' | '\u{2029}' | '\u{0085}' => {
                close(&mut stack, &mut out);
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    close(&mut stack, &mut out);
    if out == text { std::borrow::Cow::Borrowed(text) } else { std::borrow::Cow::Owned(out) }
}

/// How deep direction controls may nest in a line; deeper openers are dropped.
pub const MAX_DIRECTION_DEPTH: usize = 16;

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
    fn direction_controls_stay_in_their_line() {
        let (rlo, pdf, rli, pdi, lre) = ('\u{202E}', '\u{202C}', '\u{2067}', '\u{2069}', '\u{202A}');
        // Open at the end: closed there, and at each line's end.
        assert_eq!(balance_direction_controls(&format!("a{rlo}b")), format!("a{rlo}b{pdf}"));
        assert_eq!(balance_direction_controls(&format!("{rli}x\ny")), format!("{rli}x{pdi}\ny"));
        // Terminators without openers are dropped.
        assert_eq!(balance_direction_controls(&format!("{pdf}{pdi}ok")), "ok");
        // PDI closes the embeddings opened inside its isolate; PDF cannot close across one.
        assert_eq!(balance_direction_controls(&format!("{rli}{lre}x{pdi}")), format!("{rli}{lre}x{pdf}{pdi}"));
        assert_eq!(balance_direction_controls(&format!("{lre}{rli}x{pdf}")), format!("{lre}{rli}x{pdi}{pdf}"));
        // Balanced text is untouched, and balancing twice changes nothing.
        let fine = format!("سلام {rli}Hello{pdi} و {lre}abc{pdf}");
        assert!(matches!(balance_direction_controls(&fine), std::borrow::Cow::Borrowed(_)));
        let deep: String = std::iter::repeat_n(rlo, 40).chain("x".chars()).collect();
        let once = balance_direction_controls(&deep).into_owned();
        assert_eq!(once.chars().filter(|c| *c == rlo).count(), MAX_DIRECTION_DEPTH);
        assert_eq!(balance_direction_controls(&once), once);
    }

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
