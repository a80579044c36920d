//! Decoding Kafka messages into row identifiers.
//!
//! Pure: takes the message key and payload as bytes, returns ids or a reason
//! the message cannot be decoded. Row payloads (Debezium `after`/`before`) are
//! never used as data: only the id is taken, the row is re-read later.

use crate::id::{Id, IdError, IdType, truncate_for_message};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which part of a Kafka message carries the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagePart {
    /// The message key (the default: keys also pick the partition).
    #[default]
    Key,
    /// The message value.
    Value,
}

/// How a mapping's messages are encoded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MessageFormat {
    /// The id as plain UTF-8 text, e.g. `42`.
    Plain {
        /// Where the id is (default `key`).
        #[serde(default)]
        from: MessagePart,
    },
    /// A JSON document holding the id (or an array of ids) at `field`.
    Json {
        /// Dot-separated path to the id, e.g. `id` or `data.order_id` (default `id`).
        #[serde(default = "default_json_field")]
        field: String,
        /// Where the JSON is (default `value`).
        #[serde(default = "value_part")]
        from: MessagePart,
    },
    /// A Debezium change event. The id is read from the key (`payload.<id
    /// column>` or `<id column>`), or, for keyless topics, from the value's
    /// `payload.after`/`payload.before`. The row data in the event is ignored.
    Debezium,
}

impl Default for MessageFormat {
    fn default() -> Self {
        MessageFormat::Plain {
            from: MessagePart::Key,
        }
    }
}

fn default_json_field() -> String {
    "id".to_owned()
}

fn value_part() -> MessagePart {
    MessagePart::Value
}

/// Why a message could not be turned into ids. The `reason_code` goes into the
/// dead-letter message's headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message has no value where the id should be (a tombstone).
    #[error("tombstone: the message has no {0}")]
    Tombstone(&'static str),
    /// The bytes are not UTF-8 text.
    #[error("the message {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// The bytes are not valid JSON.
    #[error("the message {part} is not JSON: {reason}")]
    NotJson {
        /// Key or value.
        part: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The JSON has no id at the expected place.
    #[error("no id at {0}")]
    MissingField(String),
    /// The id is there but of the wrong type.
    #[error("bad id: {0}")]
    BadId(#[from] IdError),
}

impl DecodeError {
    /// Short, stable code for headers and metric labels.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::Tombstone(_) => "tombstone",
            DecodeError::NotUtf8(_) => "not_utf8",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::MissingField(_) => "missing_id",
            DecodeError::BadId(_) => "bad_id",
        }
    }
}

/// Everything decoding needs to know about a mapping.
#[derive(Debug, Clone)]
pub struct Decoder {
    format: MessageFormat,
    id_type: IdType,
    id_column: String,
    json_path: Vec<String>,
}

impl Decoder {
    /// A decoder for `format`, producing ids of `id_type`; `id_column` names the
    /// id field inside Debezium keys and row images.
    pub fn new(format: MessageFormat, id_type: IdType, id_column: &str) -> Decoder {
        let json_path = match &format {
            MessageFormat::Json { field, .. } => field.split('.').map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Decoder {
            format,
            id_type,
            id_column: id_column.to_owned(),
            json_path,
        }
    }

    /// Decodes one message into the ids it names (usually one).
    pub fn decode(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Vec<Id>, DecodeError> {
        match &self.format {
            MessageFormat::Plain { from } => {
                let (bytes, part) = pick(*from, key, value)?;
                let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8(part))?;
                Ok(vec![Id::parse(text, self.id_type)?])
            }
            MessageFormat::Json { from, .. } => {
                let (bytes, part) = pick(*from, key, value)?;
                let document = parse_json(bytes, part)?;
                let found = walk(&document, self.json_path.iter().map(String::as_str))
                    .ok_or_else(|| DecodeError::MissingField(self.json_path.join(".")))?;
                self.ids_from_json(found)
            }
            MessageFormat::Debezium => self.decode_debezium(key, value),
        }
    }

    fn ids_from_json(&self, found: &Value) -> Result<Vec<Id>, DecodeError> {
        match found {
            Value::Array(items) => items
                .iter()
                .map(|item| Id::from_json(item, self.id_type).map_err(DecodeError::from))
                .collect(),
            scalar => Ok(vec![Id::from_json(scalar, self.id_type)?]),
        }
    }

    fn decode_debezium(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Vec<Id>, DecodeError> {
        let column = self.id_column.as_str();
        if let Some(key) = key.filter(|key| !key.is_empty()) {
            let document = parse_json(key, "key")?;
            // With the JSON converter's schemas enabled the key is {schema, payload}.
            let found = walk(&document, ["payload", column])
                .or_else(|| walk(&document, [column]))
                .filter(|found| !found.is_null())
                .ok_or_else(|| DecodeError::MissingField(format!("key.{column}")))?;
            return Ok(vec![Id::from_json(found, self.id_type)?]);
        }
        let value = value
            .filter(|value| !value.is_empty())
            .ok_or(DecodeError::Tombstone("key or value"))?;
        let document = parse_json(value, "value")?;
        let envelope = walk(&document, ["payload"])
            .filter(|p| p.is_object())
            .unwrap_or(&document);
        let found = ["after", "before"]
            .iter()
            .find_map(|image| walk(envelope, [*image, column]).filter(|found| !found.is_null()))
            .ok_or_else(|| DecodeError::MissingField(format!("payload.after.{column}")))?;
        Ok(vec![Id::from_json(found, self.id_type)?])
    }
}

/// A message to produce: key and value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// The key (also what picks the partition).
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Option<Vec<u8>>,
}

impl Decoder {
    /// The message this decoder reads back as exactly `id`: the inverse of
    /// [`Decoder::decode`], used to re-publish ids (`esync dlq replay`). The
    /// key always identifies the id, so one id keeps going to one partition.
    ///
    /// - plain: the id text as key and value (as `kafka::IdProducer` does);
    /// - json: `field` as nested objects in the configured part, the id a
    ///   JSON number for integer ids and a string for string ids;
    /// - debezium: the key `{"<id column>": id}` and the value
    ///   `{"after": {"<id column>": id}}` (never a tombstone, which a
    ///   compacted topic would take as a delete).
    pub fn encode(&self, id: &Id) -> EncodedMessage {
        let json_id = match id {
            Id::Int(int) => Value::from(*int),
            Id::Str(text) => Value::from(&**text),
        };
        match &self.format {
            MessageFormat::Plain { .. } => {
                let text = id.to_string().into_bytes();
                EncodedMessage {
                    key: Some(text.clone()),
                    value: Some(text),
                }
            }
            MessageFormat::Json { from, .. } => {
                let document = self
                    .json_path
                    .iter()
                    .rev()
                    .fold(json_id, |inner, step| {
                        Value::Object([(step.clone(), inner)].into_iter().collect())
                    })
                    .to_string()
                    .into_bytes();
                let text = id.to_string().into_bytes();
                match from {
                    MessagePart::Key => EncodedMessage {
                        key: Some(document.clone()),
                        value: Some(document),
                    },
                    MessagePart::Value => EncodedMessage {
                        key: Some(text),
                        value: Some(document),
                    },
                }
            }
            MessageFormat::Debezium => {
                let key = serde_json::json!({ self.id_column.as_str(): json_id });
                let value = serde_json::json!({ "after": key });
                EncodedMessage {
                    key: Some(key.to_string().into_bytes()),
                    value: Some(value.to_string().into_bytes()),
                }
            }
        }
    }
}

fn pick<'a>(
    part: MessagePart,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> Result<(&'a [u8], &'static str), DecodeError> {
    let (bytes, name) = match part {
        MessagePart::Key => (key, "key"),
        MessagePart::Value => (value, "value"),
    };
    match bytes {
        Some(bytes) if !bytes.is_empty() => Ok((bytes, name)),
        _ => Err(DecodeError::Tombstone(name)),
    }
}

fn parse_json(bytes: &[u8], part: &'static str) -> Result<Value, DecodeError> {
    serde_json::from_slice(bytes).map_err(|error| DecodeError::NotJson {
        part,
        reason: truncate_for_message(&error.to_string()),
    })
}

fn walk<'a, 'p>(document: &'a Value, path: impl IntoIterator<Item = &'p str>) -> Option<&'a Value> {
    path.into_iter()
        .try_fold(document, |node, step| node.get(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(from: MessagePart, id_type: IdType) -> Decoder {
        Decoder::new(MessageFormat::Plain { from }, id_type, "id")
    }

    fn json(field: &str) -> Decoder {
        Decoder::new(
            MessageFormat::Json {
                field: field.into(),
                from: MessagePart::Value,
            },
            IdType::Integer,
            "id",
        )
    }

    fn debezium(id_type: IdType) -> Decoder {
        Decoder::new(MessageFormat::Debezium, id_type, "order_id")
    }

    #[test]
    fn plain_key_and_value() {
        let decoder = plain(MessagePart::Key, IdType::Integer);
        assert_eq!(
            decoder.decode(Some(b"17"), Some(b"ignored")),
            Ok(vec![Id::Int(17)])
        );
        assert_eq!(
            decoder.decode(None, Some(b"17")),
            Err(DecodeError::Tombstone("key"))
        );
        let decoder = plain(MessagePart::Value, IdType::String);
        assert_eq!(
            decoder.decode(None, Some(b"sku-1")),
            Ok(vec![Id::Str("sku-1".into())])
        );
        assert_eq!(
            decoder.decode(Some(b"k"), None),
            Err(DecodeError::Tombstone("value"))
        );
        assert_eq!(
            decoder.decode(Some(b"k"), Some(b"")),
            Err(DecodeError::Tombstone("value"))
        );
    }

    /// Issue 9, item 2: string ids keep their surrounding whitespace in every format.
    #[test]
    fn string_ids_keep_their_whitespace() {
        let id = || Ok(vec![Id::Str(" sku\t1 ".into())]);
        assert_eq!(
            plain(MessagePart::Key, IdType::String).decode(Some(b" sku\t1 "), None),
            id()
        );
        let json = Decoder::new(
            MessageFormat::Json {
                field: "id".into(),
                from: MessagePart::Value,
            },
            IdType::String,
            "id",
        );
        assert_eq!(json.decode(None, Some(br#"{"id": " sku\t1 "}"#)), id());
        let debezium = debezium(IdType::String);
        assert_eq!(
            debezium.decode(Some(br#"{"order_id": " sku\t1 "}"#), None),
            id()
        );
    }

    #[test]
    fn plain_malformed() {
        let decoder = plain(MessagePart::Key, IdType::Integer);
        assert_eq!(
            decoder.decode(Some(&[0xff, 0xfe]), None),
            Err(DecodeError::NotUtf8("key"))
        );
        let error = decoder.decode(Some(b"12x"), None).unwrap_err();
        assert_eq!(error.reason_code(), "bad_id");
        assert_eq!(
            decoder.decode(Some(b"  "), None),
            Err(DecodeError::BadId(IdError::Empty))
        );
    }

    #[test]
    fn json_paths_and_arrays() {
        assert_eq!(
            json("id").decode(None, Some(br#"{"id": 3}"#)),
            Ok(vec![Id::Int(3)])
        );
        assert_eq!(
            json("id").decode(None, Some(br#"{"id": "3"}"#)),
            Ok(vec![Id::Int(3)])
        );
        assert_eq!(
            json("data.order_id").decode(None, Some(br#"{"data": {"order_id": 9}, "op": "u"}"#)),
            Ok(vec![Id::Int(9)])
        );
        assert_eq!(
            json("ids").decode(None, Some(br#"{"ids": [1, 2, 2]}"#)),
            Ok(vec![Id::Int(1), Id::Int(2), Id::Int(2)])
        );
    }

    #[test]
    fn json_malformed() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "not_json"),
            (br#"{"other": 1}"#, "missing_id"),
            (br#"{"id": null}"#, "bad_id"),
            (br#"{"id": 1.5}"#, "bad_id"),
            (br#"{"id": [1, "x"]}"#, "bad_id"),
            (br#"[1, 2]"#, "missing_id"),
        ];
        for (payload, code) in cases {
            let error = json("id").decode(None, Some(payload)).unwrap_err();
            assert_eq!(
                error.reason_code(),
                *code,
                "payload {:?}",
                String::from_utf8_lossy(payload)
            );
        }
        assert_eq!(
            json("id")
                .decode(Some(b"1"), None)
                .unwrap_err()
                .reason_code(),
            "tombstone"
        );
    }

    #[test]
    fn debezium_key_with_and_without_schema() {
        let decoder = debezium(IdType::Integer);
        let with_schema = br#"{"schema": {"type": "struct"}, "payload": {"order_id": 1001}}"#;
        assert_eq!(
            decoder.decode(Some(with_schema), None),
            Ok(vec![Id::Int(1001)])
        );
        assert_eq!(
            decoder.decode(Some(br#"{"order_id": 7}"#), Some(b"{}")),
            Ok(vec![Id::Int(7)])
        );
        // A Debezium tombstone (key, no value) still names the id: re-reading it is harmless.
        assert_eq!(
            decoder.decode(Some(br#"{"order_id": 7}"#), None),
            Ok(vec![Id::Int(7)])
        );
    }

    #[test]
    fn debezium_value_when_keyless() {
        let decoder = debezium(IdType::String);
        let update = br#"{"payload": {"before": {"order_id": "a"}, "after": {"order_id": "a", "total": 5}, "op": "u"}}"#;
        assert_eq!(
            decoder.decode(None, Some(update)),
            Ok(vec![Id::Str("a".into())])
        );
        let delete = br#"{"before": {"order_id": "b"}, "after": null, "op": "d"}"#;
        assert_eq!(
            decoder.decode(None, Some(delete)),
            Ok(vec![Id::Str("b".into())])
        );
    }

    #[test]
    fn debezium_malformed() {
        let decoder = debezium(IdType::Integer);
        assert_eq!(
            decoder.decode(None, None).unwrap_err().reason_code(),
            "tombstone"
        );
        assert_eq!(
            decoder.decode(Some(b"{"), None).unwrap_err().reason_code(),
            "not_json"
        );
        assert_eq!(
            decoder
                .decode(Some(br#"{"payload": {"id": 1}}"#), None)
                .unwrap_err()
                .reason_code(),
            "missing_id"
        );
        assert_eq!(
            decoder
                .decode(
                    None,
                    Some(br#"{"payload": {"after": null, "before": null}}"#)
                )
                .unwrap_err()
                .reason_code(),
            "missing_id"
        );
    }

    /// `dlq replay` re-publishes ids: whatever the format, the daemon must
    /// read back exactly the id that was dead-lettered.
    #[test]
    fn encoded_ids_decode_to_themselves() {
        let formats = [
            MessageFormat::Plain {
                from: MessagePart::Key,
            },
            MessageFormat::Plain {
                from: MessagePart::Value,
            },
            MessageFormat::Json {
                field: "id".into(),
                from: MessagePart::Value,
            },
            MessageFormat::Json {
                field: "data.order.id".into(),
                from: MessagePart::Key,
            },
            MessageFormat::Debezium,
        ];
        let ids = [
            (IdType::Integer, Id::Int(42)),
            (IdType::Integer, Id::Int(i64::MIN)),
            (IdType::String, Id::Str(" sku\t\"1\" ".into())),
            (IdType::String, Id::Str("18446744073709551615".into())),
        ];
        for format in formats {
            for (id_type, id) in &ids {
                let decoder = Decoder::new(format.clone(), *id_type, "order_id");
                let message = decoder.encode(id);
                assert_eq!(
                    decoder.decode(message.key.as_deref(), message.value.as_deref()),
                    Ok(vec![id.clone()]),
                    "{format:?} {id:?} {message:?}"
                );
                assert!(message.key.is_some() && message.value.is_some());
            }
        }
    }

    #[test]
    fn format_from_yaml() {
        let format: MessageFormat = serde_yaml::from_str("type: json\nfield: data.id").unwrap();
        assert_eq!(
            format,
            MessageFormat::Json {
                field: "data.id".into(),
                from: MessagePart::Value
            }
        );
        let format: MessageFormat = serde_yaml::from_str("type: plain").unwrap();
        assert_eq!(format, MessageFormat::default());
        assert!(serde_yaml::from_str::<MessageFormat>("type: plain\nfrm: key").is_err());
    }
}
