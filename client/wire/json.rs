//! The JSON form of a datagram: one flat object, as the seed writes it.
//!
//! Every kind shares one field layout in one fixed order (`type`, `from`,
//! `timestamp`, `body`, then the optional extension fields), `body` is
//! always written (empty for control datagrams) and absent optional fields
//! are omitted, so the bytes are exactly what the seed and earlier versions
//! of this peer send. On decode, unknown fields are ignored and a field that
//! does not belong to the datagram's kind is read (type-checked) and dropped.

use p2pchat::PeerId;
use serde::{Deserialize, Serialize};

use super::{Kind, Part};

/// What is written: borrowed from a typed datagram.
#[derive(Serialize)]
pub(super) struct Out<'a> {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub from: PeerId,
    pub timestamp: f64,
    pub body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upto: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
}

impl<'a> Out<'a> {
    /// A record of `kind` with every optional field unset.
    pub fn new(kind: Kind, from: PeerId, timestamp: f64) -> Out<'a> {
        Out {
            kind,
            from,
            timestamp,
            body: "",
            id: None,
            upto: None,
            part: None,
            extensions: None,
            nonce: None,
            session: None,
            username: None,
            noise: None,
        }
    }
}

/// What is read: only `type` and `from` are required.
#[derive(Deserialize)]
pub(super) struct In {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub from: PeerId,
    #[serde(default)]
    pub timestamp: f64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub upto: Option<u64>,
    #[serde(default)]
    pub part: Option<Part>,
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
    #[serde(default)]
    pub nonce: Option<u64>,
    #[serde(default)]
    pub session: Option<u64>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub noise: Option<String>,
}
