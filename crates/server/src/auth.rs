//! Who is asking: every API request is resolved, once, to an [`Actor`] — a user, reached
//! through a Bearer token (a personal API token or the bootstrap admin token) or a browser's
//! session cookie. What the actor may then do is decided by [`crate::policy`], not here.
//!
//! - Credentials are looked up by keyed hash (see `keys`; browser session cookies under a key
//!   of their own); a user who is disabled, deleted or
//!   whose credential is revoked or expired is refused. Resolved actors are cached for
//!   `ServerConfig::credential_cache_ttl` (1 s), so a flood of requests with one token costs one lookup a second;
//!   a replica that disables a user or revokes a credential forgets its whole cache at once and
//!   tells the other replicas (over Redis) to do the same.
//! - A browser session also ends after [`SESSION_IDLE`] without use.
//! - Requests that change state with a cookie must come from our own pages: a cross-site
//!   `Sec-Fetch-Site` or an `Origin` of another host is refused (CSRF). Bearer tokens are not
//!   sent by browsers on their own, so they need no such check.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use streamspace_store::{ApiKeyKind, StoreError};

pub(crate) use crate::actor::Actor;
use crate::error::ApiError;
use crate::policy::Principal;
use crate::state::AppState;

/// Name of the browser session cookie.
pub(crate) const SESSION_COOKIE: &str = "streamspace_session";
/// A browser session unused for this long is over.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// A browser session lasts at most this long, used or not.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of the session cookie, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie `name`, if the request carries one that is not empty.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, value)| *n == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// The client's address, for the audit log and the sign-in throttle: the TCP peer's, unless the
/// peer is a trusted proxy (`--trusted-proxies`); then the nearest address in `X-Forwarded-For`
/// that is not itself a trusted proxy (each proxy appends the address it heard from).
pub(crate) fn client_addr(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<String> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    Some(forwarded_client(peer, headers, trusted).to_string())
}

fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// Middleware admitting only requests of a signed-in user; puts the [`Actor`] in the request.
pub(crate) async fn require_user(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = client_addr(
        request.extensions(),
        request.headers(),
        &app.config.trusted_proxies,
    );
    let actor = authenticate(&app, request.headers(), request.method(), client).await?;
    request.extensions_mut().insert(actor);
    Ok(next.run(request).await)
}

/// Resolves the request's credential to an actor, or answers 401/403.
pub(crate) async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    method: &Method,
    client_addr: Option<String>,
) -> Result<Actor, ApiError> {
    let (secret, from_cookie) = match (bearer_token(headers), session_cookie(headers)) {
        (Some(token), _) => (token, false),
        (None, Some(cookie)) => (cookie, true),
        (None, None) => {
            return Err(ApiError::unauthorized(
                "sign in first: send `Authorization: Bearer <token>` or the session cookie",
            ));
        }
    };
    if from_cookie && changes_state(method) {
        check_same_origin(headers)?;
    }
    // Cached under its hash with the current key of its kind (sessions have their own).
    let hash = if from_cookie {
        app.keys.sessions.mac(secret)
    } else {
        app.keys.credentials.mac(secret)
    };
    let cached = app.credentials.get(&hash);
    if let Some(Some(mut actor)) = cached {
        actor.client_addr = client_addr;
        return Ok(actor);
    }
    // Past here the credential is unknown, or not checked lately: a client that sent too many
    // bad ones waits before it may make the store look again.
    if let Some(client) = &client_addr {
        app.throttle.check_credential(client)?;
    }
    let result = match cached {
        Some(None) => Err(invalid_credential()),
        _ => resolve(app, secret, &hash, from_cookie, client_addr.clone()).await,
    };
    match result {
        Ok(actor) => {
            app.credentials.insert(hash, actor.clone());
            Ok(actor)
        }
        Err(e) => {
            if e.status == axum::http::StatusCode::UNAUTHORIZED
                && let Some(client) = &client_addr
            {
                app.throttle.credential_failed(client);
            }
            Err(e)
        }
    }
}

fn invalid_credential() -> ApiError {
    ApiError::unauthorized("invalid, expired or revoked credential")
}

async fn resolve(
    app: &AppState,
    secret: &str,
    hash: &str,
    from_cookie: bool,
    client_addr: Option<String>,
) -> Result<Actor, ApiError> {
    let invalid = invalid_credential;
    let store = app.store.as_ref();
    let found = if from_cookie {
        crate::keys::find(store, &app.keys.sessions, secret).await
    } else {
        crate::keys::find(store, &app.keys.credentials, secret).await
    };
    let Some(record) = found.map_err(|e| ApiError::from_store(e, "looking up a credential"))?
    else {
        app.credentials.insert_unknown(hash.to_owned());
        return Err(invalid());
    };
    let expected = if from_cookie {
        matches!(record.kind, ApiKeyKind::Browser)
    } else {
        matches!(record.kind, ApiKeyKind::Admin | ApiKeyKind::User)
    };
    if !expected {
        return Err(invalid());
    }
    if record.kind == ApiKeyKind::Browser {
        let idle = chrono::TimeDelta::from_std(SESSION_IDLE).unwrap_or(chrono::TimeDelta::MAX);
        let last = record.last_used_at.unwrap_or(record.created_at);
        if chrono::Utc::now() - last > idle {
            return Err(ApiError::unauthorized("your session ended; sign in again"));
        }
    }
    let user_id = record.user_id.ok_or_else(invalid)?;
    let user = match app.store.get_user_by_id(user_id).await {
        Ok(record) => record.user,
        Err(StoreError::NotFound { .. }) => return Err(invalid()),
        Err(e) => return Err(ApiError::from_store(e, "reading a credential's user")),
    };
    if user.disabled {
        return Err(ApiError::unauthorized("this account is disabled"));
    }
    Ok(Actor {
        principal: Principal {
            user_id: user.id,
            username: user.username,
            role: user.role,
            groups: user.groups,
        },
        credential_id: record.id,
        kind: record.kind,
        client_addr,
    })
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a cookie-authenticated request that a page of another site made the browser send.
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let forbidden = || {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "cross-site request refused: use StreamSpace's own pages or a Bearer token",
        )
    };
    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header_str("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(forbidden());
    }
    if let Some(origin) = header_str("origin") {
        let host = header_str("host").unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Err(forbidden());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(session_cookie(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; streamspace_session=ssb_x; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("ssb_x"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("streamspace_session="),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().expect("a network"),
            "127.0.0.1/32".parse().expect("a network"),
        ];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.7, 10.1.2.3"),
        );
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        assert_eq!(
            forwarded_client(ip("10.9.9.9"), &h, &trusted),
            ip("203.0.113.7"),
            "the nearest untrusted hop is the client; what it claimed before is not believed"
        );
        assert_eq!(
            forwarded_client(ip("192.0.2.1"), &h, &trusted),
            ip("192.0.2.1"),
            "an untrusted peer cannot choose its address"
        );
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1"),
            "a trusted peer without the header is the client"
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.5"));
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &h, &trusted),
            ip("10.0.0.5")
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("not an address"),
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &h, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn cross_site_cookie_requests_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(check_same_origin(&headers(&[("host", "ss.example")])).is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(
            check_same_origin(&headers(&[
                ("host", "ss.example"),
                ("origin", "https://ss.example")
            ]))
            .is_ok()
        );
        assert!(
            check_same_origin(&headers(&[
                ("host", "ss.example"),
                ("origin", "https://evil.example")
            ]))
            .is_err()
        );
    }
}
