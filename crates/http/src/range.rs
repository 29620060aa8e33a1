//! HTTP range requests (RFC 9110, section 14) for downloads: the client API's and the
//! interconnect's.

use std::ops::Range;

use axum::http::{HeaderMap, header};

/// A range that lies outside the file: answered with 416 and `Content-Range: bytes */SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// What a `Range` header asks of a file of `size` bytes: `None` for the whole file (no
/// header, or one this server does not honour, such as several ranges), or a range (end
/// exclusive), or [`Unsatisfiable`] when it lies outside the file.
pub fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = raw.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else { return Ok(None) };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // The last N bytes.
        (true, false) => match parse(last) {
            Some(0) | None => return Err(Unsatisfiable),
            Some(n) => size.saturating_sub(n)..size,
        },
        (false, true) => match parse(first) {
            Some(start) if start < size => start..size,
            Some(_) => return Err(Unsatisfiable),
            None => return Ok(None),
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end && start < size => start..(end + 1).min(size),
            (Some(start), Some(end)) if start <= end => return Err(Unsatisfiable),
            _ => return Ok(None),
        },
        (true, true) => return Ok(None),
    };
    if range.is_empty() { Err(Unsatisfiable) } else { Ok(Some(range)) }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ranged(value: &str, size: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        requested_range(&headers, size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(ranged("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(ranged("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(ranged("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(ranged("bytes=-500", 100), Ok(Some(0..100)));
        assert_eq!(ranged("bytes=50-500", 100), Ok(Some(50..100)));
        assert_eq!(ranged("bytes=100-", 100), Err(Unsatisfiable));
        assert_eq!(ranged("bytes=200-300", 100), Err(Unsatisfiable));
        assert_eq!(ranged("bytes=-0", 100), Err(Unsatisfiable));
        // Several ranges, a reversed one or another unit: the whole file.
        assert_eq!(ranged("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(ranged("bytes=9-1", 100), Ok(None));
        assert_eq!(ranged("items=0-1", 100), Ok(None));
        assert_eq!(requested_range(&HeaderMap::new(), 100), Ok(None));
    }
}
