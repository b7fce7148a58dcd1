//! What an image contains and what is known to be wrong with it, as pure functions over
//! bytes: reading layer archives once each ([`layers`]), the package databases found in
//! them ([`packages`], [`rpm`], its Berkeley DB form through [`berkeley`]), Go binaries'
//! build information ([`gobinary`]),
//! cargo-auditable data of Rust binaries ([`rustaudit`]), language lockfiles and manifests
//! ([`languages`]), the version orders of each packaging system ([`versions`]), advisories
//! in the OSV format ([`osv`]), read from bodies, files and zips ([`advisory_sources`]) with
//! the Debian tracker's and Alpine's secdb feeds as OSV records ([`feeds`]), which installed
//! versions they affect ([`matching`]), other scanners' reports (Trivy's, Grype's) read into
//! one shape ([`reports`]), and an inventory as a CycloneDX or SPDX document ([`sbom`]).
//! Nothing here touches the index or the blob store: the registry's scanning room feeds it
//! bytes and stores what it returns (an rpm database is the one file written, to a scratch
//! directory, because SQLite opens files, not bytes, and a Berkeley DB one is read by page).

pub mod advisory_sources;
pub mod berkeley;
pub mod feeds;
pub mod gobinary;
pub mod languages;
pub mod layers;
pub mod matching;
pub mod osv;
pub mod packages;
pub mod reports;
pub mod rpm;
pub mod rustaudit;
pub mod sbom;
pub mod versions;
