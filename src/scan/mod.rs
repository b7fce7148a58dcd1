//! What an image contains and what is known to be wrong with it, as pure functions over
//! bytes: reading layer archives once each ([`layers`]), the package databases found in
//! them ([`packages`]), the version orders of each packaging system ([`versions`]),
//! advisories in the OSV format ([`osv`]) and which installed versions they affect
//! ([`matching`]). Nothing here touches the index or the blob store: the registry's
//! scanning room feeds it bytes and stores what it returns.

pub mod layers;
pub mod matching;
pub mod osv;
pub mod packages;
pub mod versions;
