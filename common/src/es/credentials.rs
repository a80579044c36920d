//! Which credentials a cluster client sends, decided the same way by every
//! tool.
//!
//! A tool's configuration may offer three sources, checked in this order:
//! 1. an API key (the encoded `id:key`), sent as `Authorization: ApiKey`;
//! 2. a username with its password, sent as basic auth;
//! 3. `user:password@` in the node URL(s), sent as basic auth (and taken out
//!    of the URL, so no request carries it twice).
//!
//! At most one may be set: several are a configuration error naming them,
//! because silently preferring one has sent the wrong identity before (each
//! tool used to pick differently). Empty values count as unset, so an
//! exported but empty variable changes nothing. None set: no credentials.
//!
//! Pure: parses URLs, reads no environment and no files.

use crate::secret::{Secret, redact_url};
use std::fmt;
use url::Url;

/// The credential sources a tool's configuration offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSources {
    /// Encoded API key (base64 of `id:key`).
    pub api_key: Option<Secret>,
    /// Basic-auth user; needs `password`.
    pub username: Option<String>,
    /// Basic-auth password; needs `username`.
    pub password: Option<Secret>,
}

/// The credentials chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// An encoded API key.
    ApiKey(Secret),
    /// Basic auth.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: Secret,
    },
}

/// One kind of credential source, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// An API key.
    ApiKey,
    /// A username and password.
    UsernamePassword,
    /// `user:password@` in a URL.
    UrlLogin,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            CredentialSource::ApiKey => "an API key",
            CredentialSource::UsernamePassword => "a username/password",
            CredentialSource::UrlLogin => "user:password in the URL",
        })
    }
}

/// Node URLs without credentials in them, and the credentials to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLogin {
    /// The node URLs, any `user:password@` removed.
    pub urls: Vec<Url>,
    /// The credentials, if any source was set.
    pub credentials: Option<Credentials>,
}

/// Settings that cannot give one unambiguous login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No node URL at all.
    #[error("no elasticsearch url")]
    NoUrl,
    /// A URL that does not parse (shown with its password redacted).
    #[error("bad URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// More than one source is set.
    #[error("elasticsearch credentials are given several ways ({}): set only one", list(.0))]
    Several(Vec<CredentialSource>),
    /// A user without a password.
    #[error("elasticsearch user {0:?} has no password")]
    UsernameWithoutPassword(String),
    /// A password without a user.
    #[error("an elasticsearch password is set but no username")]
    PasswordWithoutUsername,
    /// The URLs name different users or passwords.
    #[error(
        "the elasticsearch urls carry different credentials: use username and password instead"
    )]
    UrlLoginsDiffer,
}

fn list(sources: &[CredentialSource]) -> String {
    sources
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses the node URLs and picks the credentials (see the module docs).
pub fn resolve_login(
    urls: &[String],
    sources: &CredentialSources,
) -> Result<ClusterLogin, CredentialError> {
    if urls.is_empty() {
        return Err(CredentialError::NoUrl);
    }
    let mut parsed_urls = Vec::with_capacity(urls.len());
    let mut url_logins = Vec::new();
    for url in urls {
        let mut parsed = Url::parse(url).map_err(|error| CredentialError::InvalidUrl {
            url: redact_url(url),
            reason: error.to_string(),
        })?;
        if let Some(login) = take_login(&mut parsed, url)? {
            url_logins.push(login);
        }
        parsed_urls.push(parsed);
    }
    let api_key = sources
        .api_key
        .clone()
        .filter(|key| !key.expose().is_empty());
    let username = sources.username.clone().filter(|user| !user.is_empty());
    let password = sources
        .password
        .clone()
        .filter(|password| !password.expose().is_empty());
    let given: Vec<CredentialSource> = [
        (api_key.is_some(), CredentialSource::ApiKey),
        (
            username.is_some() || password.is_some(),
            CredentialSource::UsernamePassword,
        ),
        (!url_logins.is_empty(), CredentialSource::UrlLogin),
    ]
    .into_iter()
    .filter_map(|(set, source)| set.then_some(source))
    .collect();
    if given.len() > 1 {
        return Err(CredentialError::Several(given));
    }
    let credentials = if let Some(key) = api_key {
        Some(Credentials::ApiKey(key))
    } else if let Some((first, rest)) = url_logins.split_first() {
        if rest.iter().any(|login| login != first) {
            return Err(CredentialError::UrlLoginsDiffer);
        }
        basic(first.username.clone(), first.password.clone())?
    } else {
        basic(username, password)?
    };
    Ok(ClusterLogin {
        urls: parsed_urls,
        credentials,
    })
}

/// Basic auth needs both halves; neither means no credentials.
fn basic(
    username: Option<String>,
    password: Option<Secret>,
) -> Result<Option<Credentials>, CredentialError> {
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(Credentials::Basic { username, password })),
        (Some(username), None) => Err(CredentialError::UsernameWithoutPassword(username)),
        (None, Some(_)) => Err(CredentialError::PasswordWithoutUsername),
        (None, None) => Ok(None),
    }
}

/// `user:password@` as found in a URL (either half may be missing).
#[derive(PartialEq)]
struct UrlLogin {
    username: Option<String>,
    password: Option<Secret>,
}

/// Takes `user:password@` out of `url`, percent-decoded (as HTTP clients
/// decode it); `None` when the URL carries neither.
fn take_login(url: &mut Url, original: &str) -> Result<Option<UrlLogin>, CredentialError> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let username = Some(decode(url.username())).filter(|user| !user.is_empty());
    let password = url
        .password()
        .map(|password| Secret::new(decode(password)))
        .filter(|password| !password.expose().is_empty());
    if username.is_none() && password.is_none() {
        return Ok(None);
    }
    let cleared = url.set_username("").and_then(|()| url.set_password(None));
    cleared.map_err(|()| CredentialError::InvalidUrl {
        url: redact_url(original),
        reason: "its credentials cannot be taken out".into(),
    })?;
    Ok(Some(UrlLogin { username, password }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(
        api_key: Option<&str>,
        username: Option<&str>,
        password: Option<&str>,
    ) -> CredentialSources {
        CredentialSources {
            api_key: api_key.map(Secret::new),
            username: username.map(str::to_owned),
            password: password.map(Secret::new),
        }
    }

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|url| (*url).to_owned()).collect()
    }

    fn basic(username: &str, password: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            username: username.into(),
            password: Secret::new(password),
        })
    }

    #[test]
    fn one_source_gives_its_credentials() {
        let plain = urls(&["http://es:9200"]);
        let cases = [
            (sources(None, None, None), None),
            (
                sources(Some("a2V5"), None, None),
                Some(Credentials::ApiKey(Secret::new("a2V5"))),
            ),
            (
                sources(None, Some("elastic"), Some("pw")),
                basic("elastic", "pw"),
            ),
            // empty values count as unset
            (sources(Some(""), Some(""), Some("")), None),
            (
                sources(Some("a2V5"), Some(""), Some("")),
                Some(Credentials::ApiKey(Secret::new("a2V5"))),
            ),
        ];
        for (given, expected) in cases {
            let login = resolve_login(&plain, &given).expect("valid settings");
            assert_eq!(login.credentials, expected, "{given:?}");
            assert_eq!(login.urls[0].as_str(), "http://es:9200/");
        }
    }

    #[test]
    fn url_login_is_taken_out_of_every_url_and_decoded() {
        let login = resolve_login(
            &urls(&["https://elastic:p%40ss@a:9200", "https://b:9200"]),
            &CredentialSources::default(),
        )
        .expect("valid settings");
        assert_eq!(login.credentials, basic("elastic", "p@ss"));
        let shown: Vec<&str> = login.urls.iter().map(Url::as_str).collect();
        assert_eq!(shown, ["https://a:9200/", "https://b:9200/"]);
    }

    #[test]
    fn several_sources_are_an_error_naming_them() {
        let cases = [
            (
                "http://es:9200",
                sources(Some("a2V5"), Some("elastic"), Some("pw")),
                vec![CredentialSource::ApiKey, CredentialSource::UsernamePassword],
            ),
            (
                "http://u:p@es:9200",
                sources(Some("a2V5"), None, None),
                vec![CredentialSource::ApiKey, CredentialSource::UrlLogin],
            ),
            (
                "http://u:p@es:9200",
                sources(None, None, Some("pw")),
                vec![
                    CredentialSource::UsernamePassword,
                    CredentialSource::UrlLogin,
                ],
            ),
        ];
        for (url, given, named) in cases {
            let error = resolve_login(&urls(&[url]), &given).expect_err("ambiguous");
            assert_eq!(error, CredentialError::Several(named), "{url} {given:?}");
        }
        let message = resolve_login(
            &urls(&["http://es:9200"]),
            &sources(Some("a2V5"), Some("elastic"), Some("pw")),
        )
        .expect_err("ambiguous")
        .to_string();
        assert_eq!(
            message,
            "elasticsearch credentials are given several ways (an API key, a username/password): set only one"
        );
    }

    #[test]
    fn half_a_login_is_an_error() {
        let plain = urls(&["http://es:9200"]);
        let cases = [
            (
                plain.clone(),
                sources(None, Some("elastic"), None),
                CredentialError::UsernameWithoutPassword("elastic".into()),
            ),
            (
                plain,
                sources(None, None, Some("pw")),
                CredentialError::PasswordWithoutUsername,
            ),
            (
                urls(&["http://elastic@es:9200"]),
                CredentialSources::default(),
                CredentialError::UsernameWithoutPassword("elastic".into()),
            ),
            (
                urls(&["http://a:1@x:9200", "http://b:2@y:9200"]),
                CredentialSources::default(),
                CredentialError::UrlLoginsDiffer,
            ),
        ];
        for (urls, given, expected) in cases {
            assert_eq!(resolve_login(&urls, &given), Err(expected), "{urls:?}");
        }
    }

    #[test]
    fn bad_urls_are_named_without_their_password() {
        assert_eq!(
            resolve_login(&[], &CredentialSources::default()),
            Err(CredentialError::NoUrl)
        );
        let error = resolve_login(&urls(&["not a url"]), &CredentialSources::default())
            .expect_err("no scheme");
        assert!(
            matches!(error, CredentialError::InvalidUrl { .. }),
            "{error:?}"
        );
        let error = resolve_login(
            &urls(&["http://u:hunter2@[::1"]),
            &CredentialSources::default(),
        )
        .expect_err("bad host");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
