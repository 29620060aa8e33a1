//! Showing service addresses without their secrets.

/// Query parameters that carry secrets in the URLs Peyvand takes (libpq's `password`, NATS
/// tokens and keys).
const SECRET_PARAMETERS: &[&str] = &["password", "pass", "token", "nkey", "secret"];

/// A URL, or several separated by commas, with any `user:password@` replaced by `***@` and
/// the values of secret query parameters by `***`, for error messages and logs.
pub fn redact_credentials(urls: &str) -> String {
    urls.split(',').map(|one| redact_one(one.trim())).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let (address, query) = match url.find('?') {
        Some(q) => (&url[..q], Some(&url[q + 1..])),
        None => (url, None),
    };
    let rest = &address[scheme_end + 3..];
    // The credentials end at the last `@` before the query: a password may contain `/` or `@`.
    let mut out = match rest.rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => address.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if SECRET_PARAMETERS.contains(&key.to_ascii_lowercase().as_str()) => {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parameters.join("&"));
    }
    out
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
        assert_eq!(redact_credentials("postgres://u:ab/cd@db/x"), "postgres://***@db/x");
        assert_eq!(
            redact_credentials("postgres://db/x?user=me&password=SECRET&sslmode=disable"),
            "postgres://db/x?user=me&password=***&sslmode=disable"
        );
        assert_eq!(redact_credentials("nats://a:1, nats://u:p@b:2"), "nats://a:1,nats://***@b:2");
        assert_eq!(redact_credentials("embedded"), "embedded");
    }
}
