//! The one parser of the `Authorization` header, for `/v2/`, `/api/v1` and `/token` alike.
//! Each surface decides what the credentials are worth (and words its refusals); this only
//! says what was presented.

use axum::http::HeaderValue;
use base64::Engine as _;

/// Largest `Authorization` header looked at; a JWT of many scopes stays far below.
pub const AUTHORIZATION_MAX: usize = 8 * 1024;

/// What a request presented in its `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No header: an anonymous request.
    None,
    /// `Basic`: a user name and a password or token secret.
    Basic {
        /// The user name (for a token, its owner's name).
        user: String,
        /// The password or token secret.
        password: String,
    },
    /// `Bearer`: an access token from the token endpoint.
    Bearer(String),
}

/// Why an `Authorization` header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsError {
    /// Longer than [`AUTHORIZATION_MAX`].
    TooLarge,
    /// Not visible ASCII.
    Malformed,
    /// `Basic` whose value is not base64 of UTF-8 `user:password`.
    MalformedBasic,
    /// A scheme other than `Basic` and `Bearer`.
    UnsupportedScheme,
}

impl Credentials {
    /// Reads the value of an `Authorization` header (`None`: the header is absent).
    pub fn parse(header: Option<&HeaderValue>) -> Result<Credentials, CredentialsError> {
        let Some(value) = header else {
            return Ok(Credentials::None);
        };
        if value.len() > AUTHORIZATION_MAX {
            return Err(CredentialsError::TooLarge);
        }
        let value = value.to_str().map_err(|_| CredentialsError::Malformed)?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Credentials::Bearer(rest.trim().to_owned()))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) =
                basic_credentials(rest).ok_or(CredentialsError::MalformedBasic)?;
            Ok(Credentials::Basic { user, password })
        } else {
            Err(CredentialsError::UnsupportedScheme)
        }
    }
}

/// `user:password` of a Basic `Authorization` value.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Credentials, CredentialsError> {
        Credentials::parse(Some(&HeaderValue::from_str(value).unwrap()))
    }

    #[test]
    fn schemes_are_told_apart_and_malformed_values_refused() {
        assert_eq!(Credentials::parse(None), Ok(Credentials::None));
        assert_eq!(
            parse("basic dXNlcjpwYXNzOndvcmQ="),
            Ok(Credentials::Basic {
                user: "user".into(),
                password: "pass:word".into()
            })
        );
        assert_eq!(parse("Bearer  abc "), Ok(Credentials::Bearer("abc".into())));
        assert_eq!(parse("Basic !!"), Err(CredentialsError::MalformedBasic));
        assert_eq!(parse("Basic"), Err(CredentialsError::MalformedBasic));
        assert_eq!(parse("Digest x"), Err(CredentialsError::UnsupportedScheme));
        let long = format!("Bearer {}", "a".repeat(AUTHORIZATION_MAX));
        assert_eq!(parse(&long), Err(CredentialsError::TooLarge));
        let binary = HeaderValue::from_bytes(b"Basic \xff").unwrap();
        assert_eq!(
            Credentials::parse(Some(&binary)),
            Err(CredentialsError::Malformed)
        );
    }
}
