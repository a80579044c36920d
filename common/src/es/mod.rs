//! Elasticsearch connection set-up shared by every tool: which credentials
//! are sent ([`credentials`], pure) and the transport built from them
//! ([`client`]). Requests themselves stay in each tool's own adapter.

pub mod client;
pub mod credentials;
