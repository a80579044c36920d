//! Builds the Elasticsearch transport every tool uses: node URLs round
//! robin, the credentials chosen by [`super::credentials`], one request
//! time-out, optional CA certificate or no verification, and no HTTP proxy
//! (clusters are reached directly, whatever `HTTP_PROXY` says).
//!
//! Makes no request: whether the cluster answers is each tool's business.

use super::credentials::{CredentialError, CredentialSources, Credentials, resolve_login};
use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials as TransportCredentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{MultiNodeConnectionPool, TransportBuilder};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach one cluster; each tool maps its own configuration keys here.
#[derive(Debug, Clone)]
pub struct EsClientSettings {
    /// Node URLs, used round robin.
    pub urls: Vec<String>,
    /// Where credentials may come from (at most one source).
    pub credentials: CredentialSources,
    /// Time-out of one request.
    pub request_timeout: Duration,
    /// PEM file of the CA that signed the cluster's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Skip TLS certificate checks (never in production).
    pub insecure_skip_verify: bool,
}

impl EsClientSettings {
    /// Settings for these URLs: no credentials, default TLS checks.
    pub fn new(urls: Vec<String>, request_timeout: Duration) -> EsClientSettings {
        EsClientSettings {
            urls,
            credentials: CredentialSources::default(),
            request_timeout,
            ca_cert: None,
            insecure_skip_verify: false,
        }
    }
}

/// The client could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum EsSetupError {
    /// URLs or credentials are wrong or ambiguous.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The CA file cannot be read.
    #[error("cannot read ca_cert {}: {error}", path.display())]
    CaCertUnreadable {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The CA file is not a PEM certificate.
    #[error("ca_cert {} is not a PEM certificate: {reason}", path.display())]
    CaCertInvalid {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The HTTP client refused the settings.
    #[error("cannot build the elasticsearch client: {0}")]
    Transport(String),
}

/// Builds the client (no request is made).
pub fn build_client(settings: &EsClientSettings) -> Result<Elasticsearch, EsSetupError> {
    let login = resolve_login(&settings.urls, &settings.credentials)?;
    let mut builder = TransportBuilder::new(MultiNodeConnectionPool::round_robin(login.urls, None))
        .timeout(settings.request_timeout)
        .disable_proxy();
    match login.credentials {
        Some(Credentials::ApiKey(key)) => {
            builder = builder.auth(TransportCredentials::EncodedApiKey(key.expose().to_owned()));
        }
        Some(Credentials::Basic { username, password }) => {
            builder = builder.auth(TransportCredentials::Basic(
                username,
                password.expose().to_owned(),
            ));
        }
        None => {}
    }
    if settings.insecure_skip_verify {
        builder = builder.cert_validation(CertificateValidation::None);
    } else if let Some(path) = &settings.ca_cert {
        let pem = std::fs::read(path).map_err(|error| EsSetupError::CaCertUnreadable {
            path: path.clone(),
            error,
        })?;
        let certificate =
            Certificate::from_pem(&pem).map_err(|error| EsSetupError::CaCertInvalid {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        builder = builder.cert_validation(CertificateValidation::Full(certificate));
    }
    let transport = builder
        .build()
        .map_err(|error| EsSetupError::Transport(error.to_string()))?;
    Ok(Elasticsearch::new(transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_credentials_fail_before_any_request() {
        let mut settings = EsClientSettings::new(
            vec!["http://u:p@127.0.0.1:9".into()],
            Duration::from_secs(1),
        );
        assert!(build_client(&settings).is_ok());
        settings.credentials.api_key = Some(crate::secret::Secret::new("a2V5"));
        let error = build_client(&settings).expect_err("two sources");
        assert!(
            matches!(
                error,
                EsSetupError::Credentials(CredentialError::Several(_))
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let mut settings =
            EsClientSettings::new(vec!["https://127.0.0.1:9".into()], Duration::from_secs(1));
        settings.ca_cert = Some(PathBuf::from("/nonexistent/ca.pem"));
        let error = build_client(&settings).expect_err("no file");
        assert!(
            error
                .to_string()
                .starts_with("cannot read ca_cert /nonexistent/ca.pem: "),
            "{error}"
        );
    }
}
