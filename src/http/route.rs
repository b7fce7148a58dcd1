//! `/v2/` paths to spec endpoints. Repository names may contain slashes and even the words
//! `blobs` or `manifests`, which axum's path patterns cannot express, so paths are matched
//! from the right: the last segments name the endpoint, everything before them is the name.

use crate::{
    error::Error,
    oci::{Digest, Reference, RepoName},
};

/// A `/v2/` endpoint with its validated path parameters.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// end-1
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// end-8
    Tags { name: RepoName },
    /// end-3, end-7, end-9
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// end-2, end-10
    Blob { name: RepoName, digest: Digest },
    /// end-4, end-11
    Uploads { name: RepoName },
    /// end-5, end-6, end-13 and cancel
    Upload { name: RepoName, session: String },
    /// end-12
    Referrers { name: RepoName, digest: Digest },
}

impl Route {
    /// Parses the (percent-decoded) path after `/v2`.
    pub fn parse(path: &str) -> Result<Route, Error> {
        let path = path.strip_prefix('/').unwrap_or(path);
        if path.is_empty() {
            return Ok(Route::Base);
        }
        if path == "_catalog" {
            return Ok(Route::Catalog);
        }
        let segments: Vec<&str> = path.split('/').collect();
        let n = segments.len();
        let name_of = |end: usize| -> Result<RepoName, Error> {
            let name = segments[..end].join("/");
            name.parse()
                .map_err(|e: crate::oci::name::NameError| Error::NameInvalid(e.to_string()))
        };
        let tail = |k: usize| segments.get(n.wrapping_sub(k)).copied();
        match (tail(3), tail(2), tail(1)) {
            (_, Some("tags"), Some("list")) if n > 2 => Ok(Route::Tags {
                name: name_of(n - 2)?,
            }),
            (_, Some("blobs"), Some("uploads")) if n > 2 => Ok(Route::Uploads {
                name: name_of(n - 2)?,
            }),
            (Some("blobs"), Some("uploads"), Some("")) if n > 3 => Ok(Route::Uploads {
                name: name_of(n - 3)?,
            }),
            (Some("blobs"), Some("uploads"), Some(session)) if n > 3 && !session.contains(':') => {
                Ok(Route::Upload {
                    name: name_of(n - 3)?,
                    session: session.to_owned(),
                })
            }
            (_, Some("blobs"), Some(digest)) if n > 2 => Ok(Route::Blob {
                name: name_of(n - 2)?,
                digest: parse_digest(digest)?,
            }),
            (_, Some("manifests"), Some(reference)) if n > 2 => Ok(Route::Manifest {
                name: name_of(n - 2)?,
                reference: parse_reference(reference)?,
            }),
            (_, Some("referrers"), Some(digest)) if n > 2 => Ok(Route::Referrers {
                name: name_of(n - 2)?,
                digest: parse_digest(digest)?,
            }),
            _ => Err(Error::NotFound),
        }
    }
}

/// A digest from a path or query parameter; malformed is DIGEST_INVALID.
pub fn parse_digest(s: &str) -> Result<Digest, Error> {
    s.parse()
        .map_err(|e: crate::oci::digest::DigestError| Error::DigestInvalid(e.to_string()))
}

fn parse_reference(s: &str) -> Result<Reference, Error> {
    if s.contains(':') {
        return Ok(Reference::Digest(parse_digest(s)?));
    }
    s.parse()
        .map(Reference::Tag)
        .map_err(|e: crate::oci::name::NameError| Error::TagInvalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn matches_every_endpoint() {
        assert_eq!(Route::parse("/").unwrap(), Route::Base);
        assert_eq!(Route::parse("").unwrap(), Route::Base);
        assert_eq!(Route::parse("/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            Route::parse("/a/b/tags/list").unwrap(),
            Route::Tags { name: name("a/b") }
        );
        assert_eq!(
            Route::parse("/a/blobs/uploads/").unwrap(),
            Route::Uploads { name: name("a") }
        );
        assert_eq!(
            Route::parse("/a/blobs/uploads").unwrap(),
            Route::Uploads { name: name("a") }
        );
        assert_eq!(
            Route::parse("/a/blobs/uploads/123e4567-e89b-12d3-a456-426614174000").unwrap(),
            Route::Upload {
                name: name("a"),
                session: "123e4567-e89b-12d3-a456-426614174000".into()
            }
        );
        assert_eq!(
            Route::parse(&format!("/a/blobs/{D}")).unwrap(),
            Route::Blob {
                name: name("a"),
                digest: D.parse().unwrap()
            }
        );
        assert_eq!(
            Route::parse(&format!("/a/referrers/{D}")).unwrap(),
            Route::Referrers {
                name: name("a"),
                digest: D.parse().unwrap()
            }
        );
        assert_eq!(
            Route::parse("/a/manifests/latest").unwrap(),
            Route::Manifest {
                name: name("a"),
                reference: Reference::Tag("latest".parse().unwrap())
            }
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            Route::parse(&format!("/blobs/manifests/blobs/{D}")).unwrap(),
            Route::Blob {
                name: name("blobs/manifests"),
                digest: D.parse().unwrap()
            }
        );
        assert_eq!(
            Route::parse("/x/blobs/uploads/manifests/v1").unwrap(),
            Route::Manifest {
                name: name("x/blobs/uploads"),
                reference: Reference::Tag("v1".parse().unwrap())
            }
        );
        assert_eq!(
            Route::parse(&format!("/x/blobs/uploads/blobs/{D}")).unwrap(),
            Route::Blob {
                name: name("x/blobs/uploads"),
                digest: D.parse().unwrap()
            }
        );
    }

    #[test]
    fn bad_parts_get_their_own_errors() {
        assert_eq!(
            Route::parse("/A/tags/list").unwrap_err().code(),
            "NAME_INVALID"
        );
        assert_eq!(
            Route::parse("/a/../b/tags/list").unwrap_err().code(),
            "NAME_INVALID"
        );
        assert_eq!(
            Route::parse("/a/blobs/sha256:zz").unwrap_err().code(),
            "DIGEST_INVALID"
        );
        assert_eq!(
            Route::parse("/a/manifests/-x").unwrap_err().code(),
            "MANIFEST_INVALID"
        );
        assert_eq!(
            Route::parse("/a/nothing").unwrap_err().code(),
            "UNSUPPORTED"
        );
        assert_eq!(
            Route::parse("/tags/list").unwrap_err().code(),
            "UNSUPPORTED"
        );
        let long = format!("/{}/tags/list", "a".repeat(300));
        assert_eq!(Route::parse(&long).unwrap_err().code(), "NAME_INVALID");
    }

    proptest! {
        #[test]
        fn generated_routes_round_trip(
            name in "[a-z0-9]{1,6}(/(blobs|manifests|uploads|tags|[a-z0-9]{1,6})){0,3}",
            tag in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}",
        ) {
            let n: RepoName = name.parse().unwrap();
            prop_assert_eq!(Route::parse(&format!("/{name}/tags/list")).unwrap(), Route::Tags { name: n.clone() });
            prop_assert_eq!(
                Route::parse(&format!("/{name}/manifests/{tag}")).unwrap(),
                Route::Manifest { name: n.clone(), reference: Reference::Tag(tag.parse().unwrap()) }
            );
            prop_assert_eq!(
                Route::parse(&format!("/{name}/blobs/{D}")).unwrap(),
                Route::Blob { name: n.clone(), digest: D.parse().unwrap() }
            );
            prop_assert_eq!(Route::parse(&format!("/{name}/blobs/uploads/")).unwrap(), Route::Uploads { name: n });
        }

        #[test]
        fn never_panics(path in "\\PC{0,200}") {
            let _ = Route::parse(&path);
        }
    }
}
