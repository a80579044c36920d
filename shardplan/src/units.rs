//! Byte sizes as Elasticsearch writes them (`50gb`, `512mb`, `1tb`).
//!
//! Units are binary, as in Elasticsearch: `1kb` = 1024 bytes, `1gb` = 1024^3
//! bytes. This module only parses and formats; it must not do any I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::PlanError;

const UNITS: [(&str, u64); 6] = [
    ("pb", 1 << 50),
    ("tb", 1 << 40),
    ("gb", 1 << 30),
    ("mb", 1 << 20),
    ("kb", 1 << 10),
    ("b", 1),
];

/// A number of bytes, parsed from and printed as an Elasticsearch byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` kibibytes.
    pub const fn kb(n: u64) -> Self {
        Self(n << 10)
    }
    /// `n` mebibytes.
    pub const fn mb(n: u64) -> Self {
        Self(n << 20)
    }
    /// `n` gibibytes.
    pub const fn gb(n: u64) -> Self {
        Self(n << 30)
    }
    /// `n` tebibytes.
    pub const fn tb(n: u64) -> Self {
        Self(n << 40)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The exact form Elasticsearch accepts in settings: the largest unit in
    /// which the value is a whole number (`50gb`, `51300mb`, `123b`).
    pub fn to_exact_string(self) -> String {
        for (suffix, factor) in UNITS {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return format!("{}{suffix}", self.0 / factor);
            }
        }
        format!("{}b", self.0)
    }

    /// A short human form with at most one decimal (`48.8gb`), for tables.
    pub fn to_human_string(self) -> String {
        for (suffix, factor) in UNITS {
            if self.0 >= factor && factor > 1 {
                let value = self.0 as f64 / factor as f64;
                let rounded = (value * 10.0).round() / 10.0;
                if rounded.fract() == 0.0 {
                    return format!("{rounded:.0}{suffix}");
                }
                return format!("{rounded:.1}{suffix}");
            }
        }
        format!("{}b", self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_human_string())
    }
}

impl FromStr for ByteSize {
    type Err = PlanError;

    /// Parses `50gb`, `1.5tb`, `512MB`, `10GiB` or a plain number of bytes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || PlanError::InvalidByteSize(text.to_string());
        let lowered = text.trim().to_ascii_lowercase();
        let without_ib = lowered
            .strip_suffix("ib")
            .map(|stem| format!("{stem}b"))
            .unwrap_or(lowered);
        let (number, factor) = UNITS
            .iter()
            .find_map(|(suffix, factor)| {
                without_ib
                    .strip_suffix(suffix)
                    .map(|number| (number.trim(), *factor))
            })
            .unwrap_or((without_ib.as_str(), 1));
        if number.is_empty() {
            return Err(invalid());
        }
        if let Ok(whole) = number.parse::<u64>() {
            return whole.checked_mul(factor).map(ByteSize).ok_or_else(invalid);
        }
        let fractional: f64 = number.parse().map_err(|_| invalid())?;
        let bytes = fractional * factor as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(invalid());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_exact_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => Ok(ByteSize(bytes)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_elasticsearch_sizes() {
        let cases = [
            ("50gb", ByteSize::gb(50)),
            ("50GB", ByteSize::gb(50)),
            ("50GiB", ByteSize::gb(50)),
            ("1.5tb", ByteSize::gb(1536)),
            ("512mb", ByteSize::mb(512)),
            ("10kb", ByteSize::kb(10)),
            ("123b", ByteSize(123)),
            ("123", ByteSize(123)),
            (" 2 tb ", ByteSize::tb(2)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<ByteSize>().ok(), Some(expected), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "gb", "-1gb", "fifty gb", "1e400gb", "99999999999999pb"] {
            assert!(text.parse::<ByteSize>().is_err(), "{text}");
        }
    }

    #[test]
    fn formats_exact_and_human() {
        let cases = [
            (ByteSize::gb(50), "50gb", "50gb"),
            (ByteSize::mb(51_300), "51300mb", "50.1gb"),
            (ByteSize::tb(2), "2tb", "2tb"),
            (ByteSize(123), "123b", "123b"),
            (ByteSize(0), "0b", "0b"),
            (ByteSize::kb(1536), "1536kb", "1.5mb"),
        ];
        for (size, exact, human) in cases {
            assert_eq!(size.to_exact_string(), exact);
            assert_eq!(size.to_human_string(), human);
        }
    }

    #[test]
    fn exact_string_round_trips() {
        for bytes in [0, 1, 1023, 1024, 5 << 30, (5 << 30) + 1, 7 << 40] {
            let size = ByteSize(bytes);
            assert_eq!(size.to_exact_string().parse::<ByteSize>().ok(), Some(size));
        }
    }
}
