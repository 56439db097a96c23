//! Paging for list calls: a page size within bounds, and the token of the
//! next page (the last id of a full page; ids sort by creation time).

pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

/// The page size a list call asked for, within bounds (0 means the default).
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// The token for the next page: the last id when the page is full.
pub fn next_token<T>(items: &[T], limit: u32, id: impl Fn(&T) -> &String) -> String {
    if items.len() as u32 == limit { items.last().map(|i| id(i).clone()).unwrap_or_default() } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bounded_and_tokens_follow_full_pages() {
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(5), 5);
        assert_eq!(page_size(50_000), MAX_PAGE);
        let ids = vec!["a".to_string(), "b".to_string()];
        assert_eq!(next_token(&ids, 2, |s| s), "b");
        assert_eq!(next_token(&ids, 3, |s| s), "");
    }
}
