//! Docker registry tokens (auth-jwt.md): Ed25519-signed JWTs whose `access` claim lists the
//! granted actions per repository, and the `scope` strings clients ask with (auth-scope.md).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::oci::RepoName;

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// The resource type: `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource: a repository name, or `catalog`.
    pub name: String,
    /// The granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

/// The claims Berth signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (`auth.issuer`).
    pub iss: String,
    /// Subject: `anonymous`, `user:<id>` or `token:<id>`.
    pub sub: String,
    /// Audience: the registry's service name (`auth.service`).
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// A unique id.
    pub jti: String,
    /// What the token grants.
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// `refresh` for refresh tokens, which never authorize a registry request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

impl Claims {
    /// The actions this token grants on repository `name`.
    pub fn actions_on(&self, name: &str) -> Vec<String> {
        self.access
            .iter()
            .filter(|a| a.kind == "repository" && a.name == name)
            .flat_map(|a| a.actions.iter().cloned())
            .collect()
    }

    /// Whether the token grants `registry:catalog:*`.
    pub fn allows_catalog(&self) -> bool {
        self.access
            .iter()
            .any(|a| a.kind == "registry" && a.name == "catalog")
    }
}

/// A requested scope: `repository:<name>:<actions>` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Actions on one repository.
    Repository {
        /// The repository.
        name: RepoName,
        /// The actions asked for (`pull`, `push`, `delete`, `*`).
        actions: Vec<String>,
    },
    /// The catalog.
    Catalog,
}

impl Scope {
    /// Parses one scope. Names are validated as repository names (no `..`, no extra `:`),
    /// actions must be known: a malformed scope is an error, not silently nothing.
    pub fn parse(s: &str) -> Result<Scope, String> {
        if s.len() > 512 {
            return Err("scope too long".into());
        }
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid scope {s:?}: expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid scope {s:?}: expected type:name:actions"))?;
        match kind {
            "registry" if name == "catalog" && actions == "*" => Ok(Scope::Catalog),
            "repository" => {
                let name: RepoName = name
                    .parse()
                    .map_err(|e| format!("invalid scope {s:?}: {e}"))?;
                let actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
                if actions
                    .iter()
                    .any(|a| !matches!(a.as_str(), "pull" | "push" | "delete" | "*"))
                {
                    return Err(format!(
                        "invalid scope {s:?}: actions are pull, push, delete or *"
                    ));
                }
                Ok(Scope::Repository { name, actions })
            }
            _ => Err(format!("invalid scope {s:?}: unknown resource type")),
        }
    }
}

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const CLOCK_LEEWAY_SECS: i64 = 30;

/// The signing key and what verifies its tokens.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    service: String,
}

impl Keys {
    /// A fresh Ed25519 key as base64 PKCS#8.
    pub fn generate() -> String {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system random source works");
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    }

    /// Loads a base64 PKCS#8 Ed25519 key; tokens are for `service` from `issuer`.
    pub fn load(pkcs8_b64: &str, issuer: &str, service: &str) -> anyhow::Result<Keys> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(pkcs8_b64.trim())
            .map_err(|e| anyhow::anyhow!("signing key is not base64: {e}"))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("signing key is not an Ed25519 PKCS#8 key: {e}"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[service]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        // Expiry and not-before are checked against the registry's clock in `verify_at`,
        // not against the system clock the library would read.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Keys {
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
            validation,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
        })
    }

    /// Signs a token for `sub` valid `ttl` seconds from `now`.
    pub fn sign(
        &self,
        sub: &str,
        access: Vec<ResourceActions>,
        now: i64,
        ttl: i64,
        typ: Option<&str>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud: self.service.clone(),
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            typ: typ.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".into());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and not-before, the times
    /// against the system clock (for verifiers outside the server).
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        self.verify_at(token, crate::clock::Clock::default().now())
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and not-before, the times
    /// against `now` (Unix seconds, the registry's clock) with [`CLOCK_LEEWAY_SECS`] of
    /// leeway either way.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, String> {
        use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())?;
        if claims.exp < now - CLOCK_LEEWAY_SECS {
            return Err(JwtError::from(ErrorKind::ExpiredSignature).to_string());
        }
        if claims.nbf > now + CLOCK_LEEWAY_SECS {
            return Err(JwtError::from(ErrorKind::ImmatureSignature).to_string());
        }
        Ok(claims)
    }

    /// The public key, raw (32 bytes), for tests and for other verifiers.
    pub fn public_key(pkcs8_b64: &str) -> Option<Vec<u8>> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(pkcs8_b64.trim())
            .ok()?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).ok()?;
        Some(pair.public_key().as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_strictly() {
        assert_eq!(
            Scope::parse("repository:team/app:pull,push").unwrap(),
            Scope::Repository {
                name: "team/app".parse().unwrap(),
                actions: vec!["pull".into(), "push".into()]
            }
        );
        assert_eq!(Scope::parse("registry:catalog:*").unwrap(), Scope::Catalog);
        for bad in [
            "repository:a:b:c",
            "repository:../etc:pull",
            "repository:a/../b:pull",
            "repository:a:fly",
            "repository:a",
            "nothing",
            "blob:a:pull",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_check_audience() {
        let key = Keys::generate();
        let keys = Keys::load(&key, "berth", "svc").unwrap();
        let now = crate::clock::Clock::default().now();
        let t = keys.sign("user:1", vec![], now, 60, None).unwrap();
        assert_eq!(keys.verify(&t).unwrap().sub, "user:1");
        let other = Keys::load(&key, "berth", "elsewhere").unwrap();
        assert!(other.verify(&t).is_err());
        let expired = keys.sign("user:1", vec![], now - 3600, 60, None).unwrap();
        assert!(keys.verify(&expired).is_err());
        // The registry's clock decides: a valid token expires when it moves past `exp`.
        assert!(keys.verify_at(&t, now + 60 + CLOCK_LEEWAY_SECS).is_ok());
        assert!(keys.verify_at(&t, now + 61 + CLOCK_LEEWAY_SECS).is_err());
        assert!(keys.verify_at(&t, now - 1 - CLOCK_LEEWAY_SECS).is_err());
        assert!(keys.verify_at(&expired, now - 3600).is_ok());
    }
}
