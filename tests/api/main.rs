//! Integration tests of the `/v2/` API against a real server on a loopback port, one module
//! per area of the OCI Distribution spec (`/work/shared/specs/oci-distribution/spec.md`;
//! endpoint ids such as end-4b refer to its "Endpoints" table).

mod common;

mod base;
mod blobs;
mod catalog;
mod errors;
mod isolation;
mod manifests;
mod referrers;
mod tags;
mod uploads;
