//! Query fingerprints: the shape of a query source with its literal values
//! taken out, so the same query with other values groups together (the way
//! pt-query-digest abstracts SQL).
//!
//! Pure text in, text out. Works on a byte scanner rather than a JSON parser
//! because Elasticsearch truncates long sources (`index.search.slowlog.source`,
//! 1000 characters by default): a cut-off source still gets a fingerprint.
//!
//! Rules: object keys stay; string, number, `true`/`false`/`null` values
//! become `?`; a list of values becomes `[?]` whatever its length; whitespace
//! outside strings is dropped.

use xxhash_rust::xxh3::xxh3_64;

/// The fingerprint text of a query or document source.
pub fn fingerprint(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len().min(512));
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        match byte {
            b'"' => {
                let end = string_end(bytes, position);
                let is_key = next_significant(bytes, end) == Some(b':');
                if is_key {
                    out.extend_from_slice(&bytes[position..end]);
                } else {
                    push_value(&mut out);
                }
                position = end;
            }
            b'-' | b'0'..=b'9' => {
                let mut end = position + 1;
                while end < bytes.len()
                    && matches!(bytes[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    end += 1;
                }
                push_value(&mut out);
                position = end;
            }
            b't' if bytes[position..].starts_with(b"true") => {
                push_value(&mut out);
                position += 4;
            }
            b'f' if bytes[position..].starts_with(b"false") => {
                push_value(&mut out);
                position += 5;
            }
            b'n' if bytes[position..].starts_with(b"null") => {
                push_value(&mut out);
                position += 4;
            }
            b' ' | b'\t' | b'\n' | b'\r' => position += 1,
            b',' => {
                // Collapse `?,?` in value lists: drop the comma for now and
                // let `push_value` decide when the next value arrives.
                out.push(b',');
                position += 1;
            }
            other => {
                out.push(other);
                position += 1;
            }
        }
    }
    // The scanner only copies whole UTF-8 sequences (it splits on ASCII
    // bytes), so this conversion does not replace anything in practice.
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `?` unless the output already ends with `?,` or `[?`-style list
/// so a list of values collapses to one `?`.
fn push_value(out: &mut Vec<u8>) {
    if out.ends_with(b"?,") {
        out.pop();
        return;
    }
    out.push(b'?');
}

/// Index just past the closing quote of the string starting at `start`
/// (or the end of input when the string is cut off).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut position = start + 1;
    while position < bytes.len() {
        match bytes[position] {
            b'\\' => position += 2,
            b'"' => return position + 1,
            _ => position += 1,
        }
    }
    bytes.len()
}

fn next_significant(bytes: &[u8], from: usize) -> Option<u8> {
    bytes[from.min(bytes.len())..]
        .iter()
        .copied()
        .find(|byte| !byte.is_ascii_whitespace())
}

/// A short stable id for a fingerprint (16 hex digits of xxh3).
pub fn fingerprint_id(kind: &str, fingerprint: &str) -> String {
    format!("{:016x}", fingerprint_hash(kind, fingerprint))
}

/// The 64-bit hash behind [`fingerprint_id`].
pub fn fingerprint_hash(kind: &str, fingerprint: &str) -> u64 {
    let mut key = Vec::with_capacity(kind.len() + 1 + fingerprint.len());
    key.extend_from_slice(kind.as_bytes());
    key.push(0);
    key.extend_from_slice(fingerprint.as_bytes());
    xxh3_64(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_taken_out() {
        let cases = [
            (
                r#"{"query":{"term":{"user.id":{"value":"u-1","boost":1.0}}}}"#,
                r#"{"query":{"term":{"user.id":{"value":?,"boost":?}}}}"#,
            ),
            (r#"{"size": 0, "from": -10}"#, r#"{"size":?,"from":?}"#),
            (
                r#"{"terms":{"sku":["A","B","C"]},"flag":true,"x":null}"#,
                r#"{"terms":{"sku":[?]},"flag":?,"x":?}"#,
            ),
            (r#"{"q":"say \"hi\": ok"}"#, r#"{"q":?}"#),
            (r#"{"q":"caf\u00e9 ü"}"#, r#"{"q":?}"#),
            (
                r#"{"query":{"match":{"title":"cut off here"#,
                r#"{"query":{"match":{"title":?"#,
            ),
            (
                r#"{"bool":{"filter":[{"a":1},{"a":2}]}}"#,
                r#"{"bool":{"filter":[{"a":?},{"a":?}]}}"#,
            ),
            ("", ""),
        ];
        for (source, expected) in cases {
            assert_eq!(fingerprint(source), expected, "source {source}");
        }
    }

    #[test]
    fn same_shape_groups_and_other_shapes_do_not() {
        let a = fingerprint(r#"{"query":{"match":{"customer":{"query":"Nariko"}}},"size":10}"#);
        let b = fingerprint(
            r#"{ "query": { "match": { "customer": { "query": "Bob Smith" } } }, "size": 50 }"#,
        );
        let c = fingerprint(r#"{"query":{"match":{"seller":{"query":"Nariko"}}},"size":10}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(fingerprint_id("query", &a), fingerprint_id("query", &b));
        assert_ne!(fingerprint_id("query", &a), fingerprint_id("fetch", &a));
        assert_eq!(fingerprint_id("query", &a).len(), 16);
    }

    #[test]
    fn lists_of_any_length_collapse() {
        assert_eq!(
            fingerprint(r#"{"ids":{"values":["o-1","o-2","o-3"]}}"#),
            fingerprint(r#"{"ids":{"values":["o-9"]}}"#)
        );
        assert_eq!(fingerprint("[1, 2, 3]"), "[?]");
    }
}
