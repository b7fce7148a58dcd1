//! Advisories imported from OSV records and the packages they affect.
//!
//! A record is stored once per id; an import replaces it only when its `modified` is newer
//! than the stored one (the normalised text of `modified` orders as time does, so the
//! database decides in the upsert itself). Replacing it replaces its affected packages.

use sqlx::{
    Any,
    any::{AnyTypeInfo, AnyValueRef},
    error::BoxDynError,
};

use super::{Meta, placeholders};
use crate::{error::Result, scan::osv::Range};

/// An advisory to store, prepared from an OSV record.
#[derive(Debug, Clone)]
pub struct NewAdvisory {
    /// The record's id.
    pub id: String,
    /// Other ids of the same vulnerability.
    pub aliases: Vec<String>,
    /// The one-line summary.
    pub summary: Option<String>,
    /// critical, high, medium, low or unknown.
    pub severity: String,
    /// When it was published, normalised like `modified`.
    pub published: Option<String>,
    /// When it last changed, normalised (UTC, nanoseconds) so that text order is time order.
    pub modified: String,
    /// The packages it affects.
    pub packages: Vec<AdvisoryPackage>,
}

/// One package an advisory affects, with the versions that are.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdvisoryPackage {
    /// The advisory's id.
    pub advisory_id: String,
    /// The OSV ecosystem, e.g. `Debian:12`.
    pub ecosystem: String,
    /// The package name in it (for Debian, the source package).
    pub package: String,
    /// The package URL, when the record gives one.
    pub purl: Option<String>,
    /// The version ranges.
    #[sqlx(try_from = "JsonText")]
    pub ranges: Vec<Range>,
    /// The versions listed one by one.
    #[sqlx(try_from = "JsonText")]
    pub versions: Vec<String>,
}

/// An affected package with what a finding names of its advisory, for the matcher.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AffectedEntry {
    /// The advisory's id.
    pub advisory_id: String,
    /// The advisory's other ids.
    #[sqlx(try_from = "JsonText")]
    pub aliases: Vec<String>,
    /// The advisory's severity: critical, high, medium, low or unknown.
    pub severity: String,
    /// The OSV ecosystem.
    pub ecosystem: String,
    /// The package name in it.
    pub package: String,
    /// The version ranges.
    #[sqlx(try_from = "JsonText")]
    pub ranges: Vec<Range>,
    /// The versions listed one by one.
    #[sqlx(try_from = "JsonText")]
    pub versions: Vec<String>,
}

/// A stored advisory.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdvisoryRow {
    /// The record's id.
    pub id: String,
    /// Other ids of the same vulnerability.
    #[sqlx(try_from = "JsonText")]
    pub aliases: Vec<String>,
    /// The one-line summary.
    pub summary: Option<String>,
    /// critical, high, medium, low or unknown.
    pub severity: String,
    /// When it was published.
    pub published: Option<String>,
    /// When it last changed.
    pub modified: String,
    /// When it was imported (unix seconds).
    pub imported_at: i64,
}

/// What an import did to the records it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Records stored: new ids, or newer than the stored record.
    pub imported: u64,
    /// Records not newer than the stored one, left out.
    pub unchanged: u64,
    /// The ids of the records stored (whose findings may change).
    pub stored: Vec<String>,
}

/// A JSON text column, decoded into the typed value its row field names.
pub struct JsonText(String);

impl sqlx::Type<Any> for JsonText {
    fn type_info() -> AnyTypeInfo {
        <String as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for JsonText {
    fn decode(value: AnyValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        Ok(JsonText(<String as sqlx::Decode<Any>>::decode(value)?))
    }
}

impl TryFrom<JsonText> for Vec<String> {
    type Error = serde_json::Error;

    fn try_from(text: JsonText) -> std::result::Result<Self, Self::Error> {
        serde_json::from_str(&text.0)
    }
}

impl TryFrom<JsonText> for Vec<Range> {
    type Error = serde_json::Error;

    fn try_from(text: JsonText) -> std::result::Result<Self, Self::Error> {
        serde_json::from_str(&text.0)
    }
}

const ADVISORY_COLUMNS: &str = "id, aliases, summary, severity, published, modified, imported_at";
const PACKAGE_COLUMNS: &str = "advisory_id, ecosystem, package, purl, ranges, versions";

/// Package names looked up per statement (the binds of one `IN` list).
const NAMES_PER_QUERY: usize = 500;

impl Meta {
    /// Stores `advisories` in one transaction: a new id is inserted, a stored one replaced
    /// (with its packages) only when the new `modified` is later.
    pub async fn upsert_advisories(&self, advisories: &[NewAdvisory]) -> Result<Upserted> {
        let mut done = Upserted::default();
        let now = self.now();
        let mut tx = self.write_tx().await?;
        for advisory in advisories {
            let aliases = serde_json::to_string(&advisory.aliases)
                .map_err(|e| anyhow::anyhow!("aliases of {}: {e}", advisory.id))?;
            let stored = sqlx::query(
                "INSERT INTO advisories \
                 (id, aliases, summary, severity, published, modified, imported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET aliases = excluded.aliases, \
                 summary = excluded.summary, severity = excluded.severity, \
                 published = excluded.published, modified = excluded.modified, \
                 imported_at = excluded.imported_at \
                 WHERE advisories.modified < excluded.modified",
            )
            .bind(&advisory.id)
            .bind(&aliases)
            .bind(advisory.summary.as_deref())
            .bind(&advisory.severity)
            .bind(advisory.published.as_deref())
            .bind(&advisory.modified)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if stored.rows_affected() == 0 {
                done.unchanged += 1;
                continue;
            }
            done.imported += 1;
            done.stored.push(advisory.id.clone());
            sqlx::query("DELETE FROM advisory_packages WHERE advisory_id = $1")
                .bind(&advisory.id)
                .execute(&mut *tx)
                .await?;
            // The alias lookup (a CVE id finds the advisories naming it).
            sqlx::query("DELETE FROM advisory_aliases WHERE advisory_id = $1")
                .bind(&advisory.id)
                .execute(&mut *tx)
                .await?;
            for alias in &advisory.aliases {
                sqlx::query(
                    "INSERT INTO advisory_aliases (alias, advisory_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(alias)
                .bind(&advisory.id)
                .execute(&mut *tx)
                .await?;
            }
            for (position, package) in advisory.packages.iter().enumerate() {
                let ranges = serde_json::to_string(&package.ranges)
                    .map_err(|e| anyhow::anyhow!("ranges of {}: {e}", advisory.id))?;
                let versions = serde_json::to_string(&package.versions)
                    .map_err(|e| anyhow::anyhow!("versions of {}: {e}", advisory.id))?;
                sqlx::query(
                    "INSERT INTO advisory_packages \
                     (advisory_id, entry_index, ecosystem, package, purl, ranges, versions) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&advisory.id)
                .bind(position as i64)
                .bind(&package.ecosystem)
                .bind(&package.package)
                .bind(package.purl.as_deref())
                .bind(&ranges)
                .bind(&versions)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    /// When advisories were last imported (Unix seconds); `None` before the first import.
    pub async fn advisories_imported_at(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(imported_at) FROM advisories")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// The advisory `id`, if stored.
    pub async fn advisory(&self, id: &str) -> Result<Option<AdvisoryRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ADVISORY_COLUMNS} FROM advisories WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// The packages advisory `id` affects, in the record's order.
    pub async fn advisory_packages(&self, id: &str) -> Result<Vec<AdvisoryPackage>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM advisory_packages WHERE advisory_id = $1 \
             ORDER BY entry_index"
        ))
        .bind(id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Advisories after id `after` in id order, `n` at most; with `ecosystem` only those
    /// affecting a package of it, with `package` too only those affecting that package.
    pub async fn list_advisories(
        &self,
        ecosystem: Option<&str>,
        package: Option<&str>,
        after: &str,
        n: u32,
    ) -> Result<Vec<AdvisoryRow>> {
        let filter = match (ecosystem, package) {
            (Some(_), Some(_)) => {
                " AND EXISTS (SELECT 1 FROM advisory_packages p WHERE p.advisory_id = a.id \
                 AND p.ecosystem = $3 AND p.package = $4)"
            }
            (Some(_), None) => {
                " AND EXISTS (SELECT 1 FROM advisory_packages p WHERE p.advisory_id = a.id \
                 AND p.ecosystem = $3)"
            }
            (None, Some(_)) => {
                " AND EXISTS (SELECT 1 FROM advisory_packages p WHERE p.advisory_id = a.id \
                 AND p.package = $3)"
            }
            (None, None) => "",
        };
        let sql = format!(
            "SELECT {ADVISORY_COLUMNS} FROM advisories a WHERE id > $1{filter} \
             ORDER BY id LIMIT $2"
        );
        let mut query = sqlx::query_as(&sql).bind(after).bind(i64::from(n));
        for value in [ecosystem, package].into_iter().flatten() {
            query = query.bind(value);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// Every stored entry affecting one of `package_names` in `ecosystem` (for Debian the
    /// source package names), for the matcher.
    pub async fn advisories_for(
        &self,
        ecosystem: &str,
        package_names: &[String],
    ) -> Result<Vec<AffectedEntry>> {
        let mut found = Vec::new();
        for chunk in package_names.chunks(NAMES_PER_QUERY) {
            let sql = format!(
                "SELECT p.advisory_id, a.aliases, a.severity, p.ecosystem, p.package, \
                 p.ranges, p.versions FROM advisory_packages p \
                 JOIN advisories a ON a.id = p.advisory_id \
                 WHERE p.ecosystem = $1 AND p.package IN ({}) \
                 ORDER BY p.advisory_id, p.entry_index",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query_as(&sql).persistent(false).bind(ecosystem);
            for name in chunk {
                query = query.bind(name.as_str());
            }
            found.extend(query.fetch_all(&self.reader).await?);
        }
        Ok(found)
    }
}
