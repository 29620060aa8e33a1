//! Phone numbers as people type them, normalised to E.164.
//!
//! Iran (+98) is the default region: `09121234567`, `9121234567`, `+98 912 123 4567`,
//! `0098-912-123-4567` and the same with Persian or Arabic-Indic digits all mean
//! `+989121234567`. Numbers of other countries are accepted in international form (`+` or
//! `00` then the country code). Sign-in codes go by SMS, so an Iranian number must be a mobile
//! number (`9` after the country code).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::ascii_digit;

/// The default region's country calling code.
pub const DEFAULT_COUNTRY_CODE: &str = "98";

/// A phone number in E.164 form (`+` then 8 to 15 digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Why a phone number was refused. [`PhoneError::code`] is the stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number contains {0:?}, which is not a digit or a separator")]
    InvalidCharacter(char),
    #[error("the phone number has too few digits")]
    TooShort,
    #[error("the phone number has too many digits")]
    TooLong,
    #[error("an Iranian number must be a mobile number: 09xx xxx xxxx")]
    NotMobile,
    #[error("a country code cannot start with 0")]
    InvalidCountryCode,
}

impl PhoneNumber {
    /// Parses a phone number as a person would type it. See the module documentation.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let mut digits = String::with_capacity(input.len());
        let mut plus = false;
        for c in input.trim().chars() {
            if let Some(d) = ascii_digit(c) {
                digits.push(d);
            } else if c == '+' && digits.is_empty() && !plus {
                plus = true;
            } else if matches!(c, ' ' | '\u{00A0}' | '-' | '.' | '(' | ')' | '\u{200C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
            {
                continue;
            } else {
                return Err(PhoneError::InvalidCharacter(c));
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        let international = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_owned()
        } else if let Some(rest) = digits.strip_prefix('0') {
            format!("{DEFAULT_COUNTRY_CODE}{rest}")
        } else if digits.starts_with('9') && digits.len() == 10 {
            // A mobile number typed without its leading zero.
            format!("{DEFAULT_COUNTRY_CODE}{digits}")
        } else {
            // Bare digits are read as international digits without the '+'.
            digits
        };
        Self::from_international_digits(&international)
    }

    fn from_international_digits(digits: &str) -> Result<Self, PhoneError> {
        if digits.starts_with('0') {
            return Err(PhoneError::InvalidCountryCode);
        }
        if let Some(national) = digits.strip_prefix(DEFAULT_COUNTRY_CODE) {
            match national.len() {
                n if n < 10 => return Err(PhoneError::TooShort),
                n if n > 10 => return Err(PhoneError::TooLong),
                _ if !national.starts_with('9') => return Err(PhoneError::NotMobile),
                _ => {}
            }
        }
        match digits.len() {
            n if n < 8 => Err(PhoneError::TooShort),
            n if n > 15 => Err(PhoneError::TooLong),
            _ => Ok(Self(format!("+{digits}"))),
        }
    }

    /// The number in E.164 form, e.g. `+989121234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number without its last four digits: numbers that share it are usually in the same
    /// operator's block, which is what SMS-pumping fraud walks through.
    pub fn block_prefix(&self) -> &str {
        &self.0[..self.0.len() - 4]
    }
}

impl PhoneError {
    /// The stable error code for the API.
    pub fn code(&self) -> &'static str {
        "invalid_phone"
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

impl std::str::FromStr for PhoneNumber {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(input: &str) -> Result<String, PhoneError> {
        PhoneNumber::parse(input).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn every_common_iranian_form_normalises() {
        for input in [
            "09121234567",
            "9121234567",
            "+98 912 123 4567",
            "+989121234567",
            "0098-912-123-4567",
            "989121234567",
            "(0912) 123-4567",
            "۰۹۱۲۱۲۳۴۵۶۷",
            "٠٩١٢١٢٣٤٥٦٧",
            "+۹۸ ۹۱۲ ۱۲۳ ۴۵۶۷",
            "\u{200E}+98 912 123 4567\u{200E}",
        ] {
            assert_eq!(e164(input).as_deref(), Ok("+989121234567"), "input {input:?}");
        }
    }

    #[test]
    fn other_countries_need_international_form() {
        assert_eq!(e164("+44 7700 900123").as_deref(), Ok("+447700900123"));
        assert_eq!(e164("0049 151 23456789").as_deref(), Ok("+4915123456789"));
    }

    #[test]
    fn bad_numbers_are_refused_with_reasons() {
        assert_eq!(e164(""), Err(PhoneError::Empty));
        assert_eq!(e164("  "), Err(PhoneError::Empty));
        assert_eq!(e164("0912abc4567"), Err(PhoneError::InvalidCharacter('a')));
        assert_eq!(e164("0912+1234567"), Err(PhoneError::InvalidCharacter('+')));
        assert_eq!(e164("0912123"), Err(PhoneError::TooShort));
        assert_eq!(e164("091212345678"), Err(PhoneError::TooLong));
        assert_eq!(e164("02112345678"), Err(PhoneError::NotMobile));
        assert_eq!(e164("+0123456789"), Err(PhoneError::InvalidCountryCode));
        assert_eq!(e164("+1234"), Err(PhoneError::TooShort));
        assert_eq!(e164("+1234567890123456"), Err(PhoneError::TooLong));
    }

    #[test]
    fn block_prefix_drops_the_last_four_digits() {
        let phone = PhoneNumber::parse("09121234567").expect("valid");
        assert_eq!(phone.block_prefix(), "+98912123");
    }

    #[test]
    fn serde_round_trip_validates() {
        let phone: PhoneNumber = serde_json::from_str("\"0912 123 4567\"").expect("valid");
        assert_eq!(phone.as_str(), "+989121234567");
        assert!(serde_json::from_str::<PhoneNumber>("\"hello\"").is_err());
    }
}
