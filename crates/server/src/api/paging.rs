//! Paging of every listing: `?limit=` (default 100, at most 1000) and `?cursor=` (the
//! `next_cursor` of the previous page, opaque to clients), answered as `{items, next_cursor}`.
//!
//! Sessions, commands and agents, which grow without bound or into the thousands, are paged by
//! the database (keyset on their ids). The other listings are bounded by what operators create
//! (templates, users, groups, keys) and are paged here, over the whole list in a stable order.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use streamspace_proto::api::Page;

use crate::error::ApiError;

/// Items per page when the request names no `limit`.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` accepted.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// The page size asked for, checked.
pub(crate) fn limit(limit: Option<u32>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(limit as usize)
}

/// The cursor for a page that ended at `key`.
pub(crate) fn cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The key a cursor this server gave out stands for.
pub(crate) fn key(cursor: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("cursor is not one this server gave out (use next_cursor)");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    // No key handed out holds a control character, and PostgreSQL refuses NUL in text.
    if key.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(key)
}

/// The key of a cursor parsed as `T` (an id), or 400.
pub(crate) fn parsed_key<T: std::str::FromStr>(
    cursor: Option<&str>,
) -> Result<Option<T>, ApiError> {
    cursor
        .map(|c| {
            key(c)?.parse::<T>().map_err(|_| {
                ApiError::bad_request("cursor is not one this server gave out (use next_cursor)")
            })
        })
        .transpose()
}

/// A page of `items` read with one more than `limit` asked for: if that extra one came, there
/// is a next page, starting after the last item kept.
pub(crate) fn from_overfetch<T>(
    mut items: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| cursor(&key(last)))
    } else {
        None
    };
    Page { items, next_cursor }
}

/// A page of a whole list: `items` are sorted by `key` (ascending), and the page starts after
/// the cursor's key, so items added or removed between pages shift nothing already seen.
pub(crate) fn of_list<T>(
    mut items: Vec<T>,
    limit: Option<u32>,
    cursor: Option<&str>,
    key: impl Fn(&T) -> String,
) -> Result<Page<T>, ApiError> {
    let limit = self::limit(limit)?;
    let after = cursor.map(self::key).transpose()?;
    items.sort_by_cached_key(&key);
    let rest: Vec<T> = match after {
        Some(after) => items.into_iter().filter(|i| key(i) > after).collect(),
        None => items,
    };
    let mut rest = rest;
    rest.truncate(limit + 1);
    Ok(from_overfetch(rest, limit, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_pages_in_key_order_and_ends() {
        let names: Vec<String> = ["c", "a", "e", "b", "d"].map(String::from).to_vec();
        let first = of_list(names.clone(), Some(2), None, Clone::clone).expect("a page");
        assert_eq!(first.items, ["a", "b"]);
        let second = of_list(
            names.clone(),
            Some(2),
            first.next_cursor.as_deref(),
            Clone::clone,
        )
        .expect("a page");
        assert_eq!(second.items, ["c", "d"]);
        // "c" deleted between pages changes nothing for the reader.
        let without_c: Vec<String> = names.iter().filter(|n| *n != "c").cloned().collect();
        let third = of_list(
            without_c,
            Some(2),
            second.next_cursor.as_deref(),
            Clone::clone,
        )
        .expect("a page");
        assert_eq!(third.items, ["e"]);
        assert_eq!(third.next_cursor, None, "the last page says so");
        let exact = of_list(names, Some(5), None, Clone::clone).expect("a page");
        assert_eq!((exact.items.len(), exact.next_cursor), (5, None));
    }

    #[test]
    fn bad_limits_and_cursors_are_refused() {
        let none: Vec<String> = Vec::new();
        for bad in [0, 1001] {
            let e = of_list(none.clone(), Some(bad), None, Clone::clone).expect_err("refused");
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.message.contains("limit"), "{}", e.message);
        }
        let e = of_list(none, None, Some("!!not base64"), Clone::clone).expect_err("refused");
        assert!(e.message.contains("cursor"), "{}", e.message);
        assert!(parsed_key::<i64>(Some(&cursor("12"))).expect("parses") == Some(12));
        assert!(parsed_key::<i64>(Some(&cursor("x"))).is_err());
    }
}
