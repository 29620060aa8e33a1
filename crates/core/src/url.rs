//! Showing service addresses without their secrets.

/// A URL, or several separated by commas, with any `user:password@` replaced by `***@`, for
/// error messages and logs. Anything after the host (path, query) stays.
pub fn redact_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|one| {
            let one = one.trim();
            let Some(scheme_end) = one.find("://") else { return one.to_owned() };
            let rest = &one[scheme_end + 3..];
            // The credentials end at the last `@` before the path: a password may contain `@`.
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}://***@{}", &one[..scheme_end], &rest[at + 1..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::redact_credentials;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_credentials("nats://me:secret@10.0.0.1:4222"), "nats://***@10.0.0.1:4222");
        assert_eq!(redact_credentials("nats://10.0.0.1:4222"), "nats://10.0.0.1:4222");
        assert_eq!(
            redact_credentials("postgres://u:p@ss@db:5432/x?options=a@b"),
            "postgres://***@db:5432/x?options=a@b"
        );
        assert_eq!(redact_credentials("nats://a:1, nats://u:p@b:2"), "nats://a:1,nats://***@b:2");
        assert_eq!(redact_credentials("embedded"), "embedded");
    }
}
