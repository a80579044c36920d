//! Names of versioned indexes and their aliases.
//!
//! A mapping whose `index` is `orders` is served by the alias `orders`
//! (its write index) pointing at `orders-v<N>`; an index being rebuilt is
//! announced by the alias `orders.next`.

/// The alias that announces the index being built for `alias`.
pub fn next_alias(alias: &str) -> String {
    format!("{alias}.next")
}

/// The concrete index of version `version` behind `alias`.
pub fn versioned_index(alias: &str, version: u32) -> String {
    format!("{alias}-v{version}")
}

/// The version of `index` if it is one of `alias`'s versioned indexes.
pub fn version_of(alias: &str, index: &str) -> Option<u32> {
    let digits = index.strip_prefix(alias)?.strip_prefix("-v")?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks that `name` can be an alias with versioned indexes behind it
/// (Elasticsearch's index-name rules, and room for the `-v<N>` suffix).
pub fn check_alias_name(name: &str) -> Result<(), String> {
    const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name != name.to_lowercase() {
        return Err(format!(
            "{name:?} must be lowercase (an Elasticsearch index name)"
        ));
    }
    if let Some(bad) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(format!("{name:?} must not contain {bad:?}"));
    }
    if name.starts_with(['-', '_', '+', '.']) {
        return Err(format!("{name:?} must not start with '-', '_', '+' or '.'"));
    }
    // the longest suffix esync adds: "-v" and ten digits
    if name.len() + 12 > 255 {
        return Err(format!("{name:?} is too long for versioned index names"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_ignore_look_alikes() {
        assert_eq!(versioned_index("orders", 3), "orders-v3");
        assert_eq!(version_of("orders", "orders-v3"), Some(3));
        assert_eq!(version_of("orders", "orders-v12"), Some(12));
        assert_eq!(version_of("orders", "orders-vip-v1"), None);
        assert_eq!(version_of("orders", "orders-v"), None);
        assert_eq!(version_of("orders", "orders"), None);
        assert_eq!(version_of("orders", "other-v1"), None);
        assert_eq!(next_alias("orders"), "orders.next");
    }

    #[test]
    fn alias_names_follow_index_name_rules() {
        assert!(check_alias_name("orders").is_ok());
        assert!(check_alias_name("shop.orders_2").is_ok());
        assert!(check_alias_name("Orders").is_err());
        assert!(check_alias_name("_orders").is_err());
        assert!(check_alias_name("a*b").is_err());
        assert!(check_alias_name(&"a".repeat(250)).is_err());
    }
}
