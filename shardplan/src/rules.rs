//! The arithmetic of the shard rules: divisibility, least common multiples,
//! rounding up to a multiple, and shrink factors.
//!
//! Plain integer functions, no I/O, no knowledge of Elasticsearch: the planner
//! in [`crate::plan`] decides which rule applies and why.

/// Greatest common divisor (`gcd(0, n) = n`).
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Least common multiple, or `None` on overflow. `lcm(0, n) = 0`.
pub fn lcm(a: u64, b: u64) -> Option<u64> {
    if a == 0 || b == 0 {
        return Some(0);
    }
    (a / gcd(a, b)).checked_mul(b)
}

/// The smallest multiple of `unit` that is at least `at_least` (and at least
/// `unit` itself), or `None` on overflow or when `unit` is 0.
pub fn smallest_multiple_at_least(unit: u64, at_least: u64) -> Option<u64> {
    if unit == 0 {
        return None;
    }
    let multiples = at_least.div_ceil(unit).max(1);
    multiples.checked_mul(unit)
}

/// `ceil(numerator / denominator)` for sizes; 0 when the denominator is 0.
pub fn ceil_div(numerator: u64, denominator: u64) -> u64 {
    if denominator == 0 {
        return 0;
    }
    numerator.div_ceil(denominator)
}

/// Every divisor of `n` in ascending order (empty for 0).
pub fn divisors(n: u64) -> Vec<u64> {
    let mut small = Vec::new();
    let mut large = Vec::new();
    let mut candidate = 1;
    while candidate * candidate <= n {
        if n.is_multiple_of(candidate) {
            small.push(candidate);
            if candidate != n / candidate {
                large.push(n / candidate);
            }
        }
        candidate += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// The shard counts an index with `primaries` shards can be shrunk to:
/// the divisors of `primaries` smaller than it (the shrink API requires the
/// target to divide the source count).
pub fn shrink_targets(primaries: u64) -> Vec<u64> {
    divisors(primaries)
        .into_iter()
        .filter(|&divisor| divisor < primaries)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gcd_and_lcm_table() {
        let cases = [
            (3, 2, 1, 6),
            (6, 4, 2, 12),
            (6, 2, 2, 6),
            (14, 5, 1, 70),
            (12, 18, 6, 36),
            (1, 7, 1, 7),
            (0, 5, 5, 0),
        ];
        for (a, b, expected_gcd, expected_lcm) in cases {
            assert_eq!(gcd(a, b), expected_gcd, "gcd({a}, {b})");
            assert_eq!(lcm(a, b), Some(expected_lcm), "lcm({a}, {b})");
        }
        assert_eq!(lcm(u64::MAX, u64::MAX - 1), None);
    }

    #[test]
    fn multiples_table() {
        let cases = [(6, 6, 6), (6, 7, 12), (12, 0, 12), (12, 13, 24), (5, 5, 5)];
        for (unit, at_least, expected) in cases {
            assert_eq!(smallest_multiple_at_least(unit, at_least), Some(expected));
        }
        assert_eq!(smallest_multiple_at_least(0, 5), None);
        assert_eq!(ceil_div(300, 50), 6);
        assert_eq!(ceil_div(301, 50), 7);
        assert_eq!(ceil_div(1, 0), 0);
    }

    #[test]
    fn shrink_targets_table() {
        assert_eq!(shrink_targets(12), vec![1, 2, 3, 4, 6]);
        assert_eq!(shrink_targets(6), vec![1, 2, 3]);
        assert_eq!(shrink_targets(7), vec![1]);
        assert_eq!(shrink_targets(1), Vec::<u64>::new());
        assert_eq!(divisors(36), vec![1, 2, 3, 4, 6, 9, 12, 18, 36]);
    }

    proptest! {
        #[test]
        fn lcm_is_the_least_common_multiple(a in 1_u64..500, b in 1_u64..500) {
            let least = lcm(a, b).expect("small values do not overflow");
            prop_assert_eq!(least % a, 0);
            prop_assert_eq!(least % b, 0);
            prop_assert_eq!(least * gcd(a, b), a * b);
            for smaller in 1..least {
                prop_assert!(smaller % a != 0 || smaller % b != 0);
            }
        }

        #[test]
        fn smallest_multiple_is_minimal(unit in 1_u64..1000, at_least in 0_u64..100_000) {
            let multiple = smallest_multiple_at_least(unit, at_least).expect("no overflow");
            prop_assert_eq!(multiple % unit, 0);
            prop_assert!(multiple >= at_least && multiple >= unit);
            prop_assert!(multiple == unit || multiple - unit < at_least);
        }

        #[test]
        fn every_shrink_target_divides(primaries in 1_u64..2000) {
            let targets = shrink_targets(primaries);
            for target in &targets {
                prop_assert_eq!(primaries % target, 0);
            }
            let expected = (1..primaries).filter(|candidate| primaries % candidate == 0).count();
            prop_assert_eq!(targets.len(), expected);
        }
    }
}
