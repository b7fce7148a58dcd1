//! Integration tests of the `/v2/` API against a real server on a loopback port, one module
//! per area of the OCI Distribution spec (distribution-spec v1.1.1;
//! endpoint ids such as end-4b refer to its "Endpoints" table).

mod common;
/// Real `berth serve` processes, for the tests that kill one.
#[path = "../support/mod.rs"]
mod support;

mod advisories;
mod auth_lifecycle;
mod auth_matrix;
mod auth_tokens;
mod base;
mod blobs;
mod catalog;
mod cli;
mod connections;
mod disk_full;
mod ecosystems;
mod errors;
mod findings;
mod gc_concurrency;
mod images;
mod isolation;
mod lifecycle;
mod management;
mod manifests;
mod metrics;
mod proxy;
mod quarantine;
mod quotas;
mod referrers;
mod replication;
mod reports;
mod repositories;
mod sbom;
mod scan_policy;
mod scans;
mod seed_words;
mod signatures;
mod stats;
mod tags;
mod tls;
mod ui;
mod ui_browser;
mod ui_statements;
mod uploads;
mod vulnerabilities;
mod webhook_events;
mod webhooks;
