//! The access-control tables: users, access tokens, namespaces and members, repository
//! visibility, the token signing key and the audit log. Only plain rows here; what they mean
//! is decided in `auth`.

use sqlx::{Row, any::AnyRow};

use super::{Meta, now};
use crate::error::Result;

/// A user as stored (the password as its argon2id PHC string).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
}

/// A personal (`user_id` set) or deploy (`namespace` set) token, without its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    #[serde(skip)]
    pub user_id: Option<i64>,
    pub namespace: Option<String>,
    pub username: String,
    pub scopes: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// What a new token is stored as.
pub struct NewToken<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub user_id: Option<i64>,
    pub namespace: Option<&'a str>,
    pub username: &'a str,
    pub secret_hash: &'a str,
    pub scopes: &'a str,
    pub expires_at: Option<i64>,
}

/// What decides access to one repository for one user.
#[derive(Debug, Clone, Default)]
pub struct AccessFacts {
    pub repository_visibility: Option<String>,
    pub namespace_visibility: Option<String>,
    pub role: Option<i64>,
}

/// One member of a namespace.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberRow {
    pub user: String,
    pub role: i64,
}

/// One audit entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub client: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// Who may see what in the catalog: the filter [`Meta::visible_catalog`] applies.
pub struct CatalogViewer<'a> {
    pub admin: bool,
    /// Signed in: INTERNAL repositories are visible.
    pub signed_in: bool,
    /// The user whose memberships (reporter and up) open PRIVATE namespaces; -1 for none.
    pub user_id: i64,
    /// A namespace seen whole (the user's own, or a deploy token's); "" for none.
    pub own_namespace: &'a str,
    /// Visibility of repositories in namespaces that have no row.
    pub default_visibility: &'a str,
}

const USER_COLUMNS: &str = "id, name, password_hash, is_admin, created_at";
const TOKEN_COLUMNS: &str = "id, kind, name, user_id, namespace, username, scopes, expires_at, \
                             revoked_at, last_used_at, created_at";

/// SQL true when repository name `repo` lies in namespace `ns` (portable: no split_part).
macro_rules! in_namespace {
    ($repo:literal, $ns:literal) => {
        concat!(
            "(",
            $repo,
            " = ",
            $ns,
            " OR substr(",
            $repo,
            ", 1, length(",
            $ns,
            ") + 1) = ",
            $ns,
            " || '/')"
        )
    };
}

fn user_row(r: &AnyRow) -> UserRow {
    UserRow {
        id: r.get(0),
        name: r.get(1),
        password_hash: r.get(2),
        is_admin: r.get::<i64, _>(3) != 0,
        created_at: r.get(4),
    }
}

fn token_row(r: &AnyRow) -> TokenRow {
    TokenRow {
        id: r.get(0),
        kind: r.get(1),
        name: r.get(2),
        user_id: r.get(3),
        namespace: r.get(4),
        username: r.get(5),
        scopes: r.get(6),
        expires_at: r.get(7),
        revoked_at: r.get(8),
        last_used_at: r.get(9),
        created_at: r.get(10),
    }
}

impl Meta {
    // ---------------------------------------------------------------- users

    /// Creates a user; `None` when the name is taken.
    pub async fn create_user(&self, name: &str, hash: &str, admin: bool) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(i64::from(admin))
        .bind(now())
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(user_row))
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(user_row))
    }

    /// Users after `last` in name order, `n` at most.
    pub async fn list_users(&self, last: &str, n: u32) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(user_row).collect())
    }

    /// Deletes a user with their tokens and memberships.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        // The cascades need foreign keys on in SQLite; delete explicitly to hold on both.
        let mut tx = self.writer.begin().await?;
        let sub = "(SELECT id FROM users WHERE name = $1)";
        for table in ["access_tokens", "members"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = {sub}"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_password(&self, name: &str, hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
            .bind(name)
            .bind(hash)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET is_admin = $2 WHERE name = $1")
            .bind(name)
            .bind(i64::from(admin))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- tokens

    pub async fn insert_token(&self, t: NewToken<'_>) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO access_tokens (kind, name, user_id, namespace, username, secret_hash, \
             scopes, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING id",
        )
        .bind(t.kind)
        .bind(t.name)
        .bind(t.user_id)
        .bind(t.namespace)
        .bind(t.username)
        .bind(t.secret_hash)
        .bind(t.scopes)
        .bind(t.expires_at)
        .bind(now())
        .fetch_one(&self.writer)
        .await?;
        Ok(row.get(0))
    }

    pub async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(token_row))
    }

    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRow>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(token_row))
    }

    /// Tokens of a user (`user_id`) or of a namespace, newest first.
    pub async fn list_tokens(
        &self,
        user_id: Option<i64>,
        namespace: Option<&str>,
    ) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR namespace = $2) \
             ORDER BY id DESC"
        ))
        .bind(user_id)
        .bind(namespace)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(token_row).collect())
    }

    pub async fn touch_token(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE access_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Revokes a token; false when it does not exist or was revoked already.
    pub async fn revoke_token(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- namespaces

    /// Creates a namespace; false when it exists.
    pub async fn create_namespace(&self, name: &str, visibility: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO namespaces (name, default_visibility, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(visibility)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn namespace_visibility(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT default_visibility FROM namespaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_namespace_visibility(&self, name: &str, visibility: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE namespaces SET default_visibility = $2 WHERE name = $1")
            .bind(name)
            .bind(visibility)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_member(&self, namespace: &str, user_id: i64, role: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO members (namespace, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(namespace)
        .bind(user_id)
        .bind(role)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn remove_member(&self, namespace: &str, user_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM members WHERE namespace = $1 AND user_id = $2")
            .bind(namespace)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>> {
        let rows = sqlx::query(
            "SELECT u.name, m.role FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.namespace = $1 ORDER BY u.name",
        )
        .bind(namespace)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| MemberRow {
                user: r.get(0),
                role: r.get(1),
            })
            .collect())
    }

    pub async fn set_repository_visibility(&self, name: &str, visibility: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO repository_visibility (name, visibility) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET visibility = excluded.visibility",
        )
        .bind(name)
        .bind(visibility)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Everything access to `repo` (in `namespace`) depends on, for `user_id` (-1: nobody),
    /// in one round trip.
    pub async fn access_facts(
        &self,
        repo: &str,
        namespace: &str,
        user_id: i64,
    ) -> Result<AccessFacts> {
        let row = sqlx::query(
            "SELECT (SELECT visibility FROM repository_visibility WHERE name = $1), \
             (SELECT default_visibility FROM namespaces WHERE name = $2), \
             (SELECT role FROM members WHERE namespace = $2 AND user_id = $3)",
        )
        .bind(repo)
        .bind(namespace)
        .bind(user_id)
        .fetch_one(&self.reader)
        .await?;
        Ok(AccessFacts {
            repository_visibility: row.get(0),
            namespace_visibility: row.get(1),
            role: row.get(2),
        })
    }

    /// The catalog (repositories with a manifest, after `last`, `n` at most) as `viewer` may
    /// see it: filtered in the database, so that pages stay full and bounded.
    pub async fn visible_catalog(
        &self,
        last: &str,
        n: u32,
        viewer: &CatalogViewer<'_>,
    ) -> Result<Vec<String>> {
        let sql = concat!(
            "SELECT r.name FROM repositories r WHERE r.name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             AND ($2 = 1 \
              OR COALESCE((SELECT v.visibility FROM repository_visibility v WHERE v.name = r.name), \
                 (SELECT ns.default_visibility FROM namespaces ns WHERE ",
            in_namespace!("r.name", "ns.name"),
            "), $3) IN ('public', $4) \
              OR EXISTS (SELECT 1 FROM members mb WHERE mb.user_id = $5 AND mb.role >= 20 AND ",
            in_namespace!("r.name", "mb.namespace"),
            ") OR ",
            in_namespace!("r.name", "$6"),
            ") ORDER BY r.name LIMIT $7"
        );
        let rows = sqlx::query(sql)
            .bind(last)
            .bind(i64::from(viewer.admin))
            .bind(viewer.default_visibility)
            .bind(if viewer.signed_in {
                "internal"
            } else {
                "public"
            })
            .bind(viewer.user_id)
            .bind(viewer.own_namespace)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    // ---------------------------------------------------------------- signing key

    /// The stored signing key, creating it from `generate` when there is none. Replicas
    /// racing here all end up with the row that won.
    pub async fn signing_key(&self, generate: impl FnOnce() -> String) -> Result<String> {
        if let Some(row) = sqlx::query("SELECT pkcs8 FROM signing_keys WHERE id = 1")
            .fetch_optional(&self.writer)
            .await?
        {
            return Ok(row.get(0));
        }
        sqlx::query(
            "INSERT INTO signing_keys (id, pkcs8, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(generate())
        .bind(now())
        .execute(&self.writer)
        .await?;
        let row = sqlx::query("SELECT pkcs8 FROM signing_keys WHERE id = 1")
            .fetch_one(&self.writer)
            .await?;
        Ok(row.get(0))
    }

    // ---------------------------------------------------------------- audit

    pub async fn audit(
        &self,
        actor: &str,
        client: Option<&str>,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, client, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now())
        .bind(actor)
        .bind(client)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Audit entries newest first, with an id below `before` (0: from the newest).
    pub async fn audit_entries(&self, before: i64, n: u32) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, client, action, target, detail FROM audit_log \
             WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                client: r.get(3),
                action: r.get(4),
                target: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }
}
