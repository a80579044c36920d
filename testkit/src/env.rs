//! Service variables, unique names and free ports.

/// Reads a required test variable or fails with instructions.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/services.sh up` and `source .services/env` (scripts/test.sh does both)")
    })
}

/// The shared Kafka-protocol broker (noida-db), `ESYNC_TEST_KAFKA`.
pub fn kafka() -> String {
    required_env("ESYNC_TEST_KAFKA")
}

/// The second, independent broker (tansu), `ESYNC_TEST_TANSU`.
pub fn tansu() -> String {
    required_env("ESYNC_TEST_TANSU")
}

/// The shared Elasticsearch API server, `ESYNC_TEST_ES`.
pub fn es() -> String {
    required_env("ESYNC_TEST_ES")
}

/// The noida-db binary for private servers, `ESYNC_TEST_NOIDA_BIN`.
pub fn noida_binary() -> String {
    required_env("ESYNC_TEST_NOIDA_BIN")
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
