//! Connection URLs with their passwords hidden, for every log line, error message and help text
//! that names a database or Redis.
//!
//! A URL's user-info (`scheme://user:password@host`) and query parameters named like a
//! password (`?password=…`, `?sslpassword=…`) are the places a credential can sit in the URLs
//! StreamSpace takes; both are replaced with [`REDACTED`], the rest (user name, hosts, database,
//! options) is kept so the message still says where the connection went. The parsing is
//! deliberately lenient: a URL that no parser would accept (an unencoded `/` or `@` in its
//! password, several hosts in one authority) is still redacted, because that is exactly the URL
//! an error message quotes.

/// What a hidden password is shown as.
pub const REDACTED: &str = "***";

/// `url` with its password (in the user-info and in password-like query parameters) replaced
/// by [`REDACTED`].
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_query(url);
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    // The user-info ends at the last `@` before the query: a password may hold an unencoded
    // `/` or `@`, which would otherwise end the authority early and leave it in clear.
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    let after_userinfo = match rest[..query_start].rfind('@') {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(&rest[..at]),
            }
            at
        }
        None => 0,
    };
    out.push_str(&redact_query(&rest[after_userinfo..]));
    out
}

/// `text` with the values of password-like `?key=value&…` parameters replaced.
fn redact_query(text: &str) -> String {
    let Some(q) = text.find('?') else {
        return text.to_owned();
    };
    let (before, query) = text.split_at(q + 1);
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}={REDACTED}")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{before}{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_info_are_hidden_and_the_rest_kept() {
        let cases = [
            (
                "postgres://app:s3cret@db.example:5432/streamspace?sslmode=verify-full",
                "postgres://app:***@db.example:5432/streamspace?sslmode=verify-full",
            ),
            (
                "rediss://streamspace:s3cret@redis:6380/0",
                "rediss://streamspace:***@redis:6380/0",
            ),
            ("redis://:s3cret@redis/", "redis://:***@redis/"),
            (
                "redis+sentinel://u:s3cret@s1:26379,s2:26379/mymaster",
                "redis+sentinel://u:***@s1:26379,s2:26379/mymaster",
            ),
            // Unencoded `@` and `/` in the password: still hidden entirely.
            ("redis://u:p@ss/w@rd@redis/", "redis://u:***@redis/"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "redacting {url}");
            assert!(!redact_url(url).contains("s3cret"));
        }
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/db",
            "redis://127.0.0.1:6379/",
            "redis+sentinel://s1,s2/master",
            "sqlite:/var/lib/streamspace/db.sqlite?mode=rwc",
            "sqlite:///tmp/x.db",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn password_query_parameters_are_hidden() {
        assert_eq!(
            redact_url("postgres://app@db/s?password=s3cret&sslmode=require&sslpassword=k#x"),
            "postgres://app@db/s?password=***&sslmode=require&sslpassword=***#x"
        );
        assert_eq!(
            redact_url("postgres://db/s?PASSWORD=s3cret"),
            "postgres://db/s?PASSWORD=***"
        );
    }
}
