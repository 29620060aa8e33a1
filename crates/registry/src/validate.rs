//! Checks of every field a licence has, each refusal with its own stable code.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;

use crate::error::{ErrorCode, RegistryError, RegistryResult};
use crate::time::Millis;

/// The most signing keys a provider may list at once (a few, to rotate them).
pub const MAX_SIGNING_KEYS: usize = 8;
pub const MAX_CAPABILITIES: usize = 32;
const MAX_NAME_CHARS: usize = 100;
const MAX_CONTACT_CHARS: usize = 200;
const MAX_REASON_CHARS: usize = 500;

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> RegistryResult<T> {
    Err(RegistryError::refused(code, message))
}

fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A provider id: one lowercase DNS label (`a-z`, `0-9`, `-` inside), 2 to 63 characters.
pub fn provider_id(id: &str) -> RegistryResult<String> {
    if id.len() < 2 || !is_label(id) {
        return refuse(
            ErrorCode::InvalidProviderId,
            format!("provider id `{id}`: use 2 to 63 of a-z, 0-9 and `-`, not starting or ending with `-`"),
        );
    }
    Ok(id.to_owned())
}

/// Free text for people: trimmed, within `max` characters, with no control characters.
fn text(value: &str, what: &str, max: usize, code: ErrorCode) -> RegistryResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return refuse(code, format!("the {what} is empty"));
    }
    if value.chars().count() > max {
        return refuse(code, format!("the {what} is longer than {max} characters"));
    }
    // ZWNJ (U+200C) is a format character Persian needs; only control characters are refused.
    if value.chars().any(char::is_control) {
        return refuse(code, format!("the {what} has control characters"));
    }
    Ok(value.to_owned())
}

/// The provider's name for people; Persian is welcome.
pub fn name(value: &str) -> RegistryResult<String> {
    text(value, "name", MAX_NAME_CHARS, ErrorCode::InvalidName)
}

/// How the regulator reaches the operator.
pub fn contact(value: &str) -> RegistryResult<String> {
    text(value, "contact", MAX_CONTACT_CHARS, ErrorCode::InvalidContact)
}

/// Why a change was made: required for suspend, reinstate and revoke.
pub fn reason(value: &str) -> RegistryResult<String> {
    text(value, "reason", MAX_REASON_CHARS, ErrorCode::InvalidReason)
}

/// An optional reason: absent or blank is none.
pub fn optional_reason(value: Option<&str>) -> RegistryResult<Option<String>> {
    match value {
        Some(v) if !v.trim().is_empty() => reason(v).map(Some),
        _ => Ok(None),
    }
}

/// A fully qualified domain name (ASCII; internationalised names in their `xn--` form),
/// lowercased, with at least two labels.
pub fn domain(value: &str) -> RegistryResult<String> {
    let lower = value.trim().to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    if lower.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| is_label(l)) {
        return refuse(ErrorCode::InvalidDomain, format!("`{value}` is not a domain name like `bale.ir`"));
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return refuse(ErrorCode::InvalidDomain, format!("`{value}` is an address, not a domain name"));
    }
    Ok(lower)
}

/// Where other providers reach the provider: `https://` with a host, and no credentials,
/// query or fragment. Plain `http://` only to this machine (`127.0.0.1`, `localhost`,
/// `[::1]`), for local demos.
pub fn endpoint(value: &str) -> RegistryResult<String> {
    let bad = |why: &str| refuse(ErrorCode::InvalidEndpoint, format!("endpoint `{value}`: {why}"));
    let url = match Url::parse(value.trim()) {
        Ok(url) => url,
        Err(e) => return bad(&e.to_string()),
    };
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if local => {}
        "http" => return bad("use https:// (plain http:// is only for 127.0.0.1 or localhost)"),
        _ => return bad("use an https:// URL"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("there is no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("it must not carry credentials");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("it must not have a query or a fragment");
    }
    Ok(url.to_string())
}

/// A licence number: 1 to 64 of `A-Z a-z 0-9 - / . _`, with at least one letter or digit.
pub fn licence_number(value: &str) -> RegistryResult<String> {
    let ok = (1..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/._".contains(&b))
        && value.bytes().any(|b| b.is_ascii_alphanumeric());
    if !ok {
        return refuse(
            ErrorCode::InvalidLicenceNumber,
            format!("licence number `{value}`: use 1 to 64 of A-Z, a-z, 0-9, `-`, `/`, `.` and `_`"),
        );
    }
    Ok(value.to_owned())
}

/// A validity period: it ends after it starts.
pub fn validity(valid_from: Millis, valid_until: Millis) -> RegistryResult<()> {
    if valid_until <= valid_from {
        return refuse(ErrorCode::InvalidValidity, "valid_until must be after valid_from");
    }
    Ok(())
}

/// Ed25519 public keys, base64 of 32 bytes each: at most [`MAX_SIGNING_KEYS`], no repeats,
/// returned in the standard padded encoding.
pub fn signing_keys(keys: &[String]) -> RegistryResult<Vec<String>> {
    if keys.len() > MAX_SIGNING_KEYS {
        return refuse(ErrorCode::InvalidSigningKey, format!("at most {MAX_SIGNING_KEYS} signing keys"));
    }
    let mut out: Vec<String> = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = crate::keys::decode_public_key(key).map_err(|why| {
            RegistryError::refused(ErrorCode::InvalidSigningKey, format!("signing key `{key}`: {why}"))
        })?;
        let normal = STANDARD.encode(bytes);
        if out.contains(&normal) {
            return refuse(ErrorCode::InvalidSigningKey, format!("signing key `{key}` is listed twice"));
        }
        out.push(normal);
    }
    Ok(out)
}

/// Capabilities: at most [`MAX_CAPABILITIES`] names of 1 to 64 of `a-z 0-9 . _ -` starting
/// with a letter or digit; returned sorted, without repeats.
pub fn capabilities(values: &[String]) -> RegistryResult<Vec<String>> {
    if values.len() > MAX_CAPABILITIES {
        return refuse(ErrorCode::InvalidCapability, format!("at most {MAX_CAPABILITIES} capabilities"));
    }
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let ok = (1..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return refuse(
                ErrorCode::InvalidCapability,
                format!("capability `{value}`: use 1 to 64 of a-z, 0-9, `.`, `_` and `-`"),
            );
        }
        out.push(value.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(result: RegistryResult<T>) -> ErrorCode {
        result.expect_err("refused").code()
    }

    #[test]
    fn provider_ids_are_dns_labels() {
        for good in ["bale", "soroush-plus", "eitaa2", "a1"] {
            assert_eq!(provider_id(good).expect(good), good);
        }
        for bad in ["", "a", "Bale", "-bale", "bale-", "ba le", "bale.ir", "بله", &"a".repeat(64)] {
            assert_eq!(code(provider_id(bad)), ErrorCode::InvalidProviderId, "{bad}");
        }
    }

    #[test]
    fn names_take_persian_and_refuse_control_characters() {
        assert_eq!(name("  پیام‌رسان بله ").expect("persian"), "پیام‌رسان بله");
        assert_eq!(code(name("   ")), ErrorCode::InvalidName);
        assert_eq!(code(name("a\u{0}b")), ErrorCode::InvalidName);
        assert_eq!(code(name(&"ب".repeat(101))), ErrorCode::InvalidName);
        assert_eq!(code(contact("")), ErrorCode::InvalidContact);
        assert_eq!(code(reason(" ")), ErrorCode::InvalidReason);
        assert_eq!(optional_reason(Some("  ")).expect("blank"), None);
    }

    #[test]
    fn domains() {
        assert_eq!(domain("Bale.IR").expect("domain"), "bale.ir");
        assert_eq!(domain("xn--mgba3a4f16a.ir").expect("idn"), "xn--mgba3a4f16a.ir");
        for bad in ["bale", "bale..ir", "-bale.ir", "bale.ir.", "192.168.1.1", "بله.ir", "a b.ir"] {
            assert_eq!(code(domain(bad)), ErrorCode::InvalidDomain, "{bad}");
        }
    }

    #[test]
    fn endpoints_need_https_except_on_this_machine() {
        assert_eq!(endpoint("https://ic.bale.ir").expect("https"), "https://ic.bale.ir/");
        assert!(endpoint("https://ic.bale.ir:8443/peyvand/").is_ok());
        assert!(endpoint("http://127.0.0.1:9001").is_ok());
        assert!(endpoint("http://localhost:9001/").is_ok());
        assert!(endpoint("http://[::1]:9001/").is_ok());
        for bad in [
            "http://ic.bale.ir",
            "ftp://ic.bale.ir",
            "ic.bale.ir",
            "https://user:pw@ic.bale.ir",
            "https://ic.bale.ir/?a=1",
            "https://ic.bale.ir/#x",
            "http://127.0.0.1.evil.ir/",
        ] {
            assert_eq!(code(endpoint(bad)), ErrorCode::InvalidEndpoint, "{bad}");
        }
    }

    #[test]
    fn licence_numbers_and_validity() {
        assert!(licence_number("CRA-1404/0012").is_ok());
        for bad in ["", "---", "has space", "۱۴۰۴", &"1".repeat(65)] {
            assert_eq!(code(licence_number(bad)), ErrorCode::InvalidLicenceNumber, "{bad}");
        }
        assert!(validity(1, 2).is_ok());
        assert_eq!(code(validity(2, 2)), ErrorCode::InvalidValidity);
    }

    #[test]
    fn signing_keys_are_ed25519_public_keys() {
        let key = STANDARD.encode([7u8; 32]);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode([7u8; 32]);
        assert_eq!(signing_keys(std::slice::from_ref(&unpadded)).expect("unpadded"), vec![key.clone()]);
        assert_eq!(code(signing_keys(&[key.clone(), unpadded])), ErrorCode::InvalidSigningKey);
        assert_eq!(code(signing_keys(&[STANDARD.encode([7u8; 31])])), ErrorCode::InvalidSigningKey);
        assert_eq!(code(signing_keys(&["not base64!".to_owned()])), ErrorCode::InvalidSigningKey);
        let many: Vec<String> = (0..9u8).map(|i| STANDARD.encode([i; 32])).collect();
        assert_eq!(code(signing_keys(&many)), ErrorCode::InvalidSigningKey);
    }

    #[test]
    fn capabilities_are_sorted_names() {
        let given = vec!["messages".to_owned(), "discovery".to_owned(), "messages".to_owned()];
        assert_eq!(capabilities(&given).expect("ok"), vec!["discovery", "messages"]);
        for bad in ["", "Messages", "-x", "a b"] {
            assert_eq!(code(capabilities(&[bad.to_owned()])), ErrorCode::InvalidCapability, "{bad}");
        }
    }
}
