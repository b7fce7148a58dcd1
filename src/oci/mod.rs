//! Pure types of the registry's vocabulary (OCI digests, names, manifests; visibility): no I/O. Parsing validates, so every later layer holds only valid values.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod visibility;

pub use digest::{Digest, Hasher};
pub use manifest::{Manifest, MediaType};
pub use name::{Reference, RepoName, Tag};
pub use visibility::Visibility;
