//! The offline access-control commands, on the configured database: `berth user`,
//! `berth token`, `berth namespace` and `berth visibility`. Each acts as the local
//! administrator and prints one line per change (or the listing asked for).

use anyhow::Context;
use berth::{
    auth::{Auth, Identity, NewTokenSecret, Role, TokenRequest},
    config::Config,
    oci::{RepoName, Visibility},
};
use clap::Subcommand;

use super::IndexArgs;

#[derive(Subcommand)]
pub(super) enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
    Create {
        /// The user's login name.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password, read from the first line of standard input.
    Passwd {
        /// The user's login name.
        name: String,
    },
    /// Delete a user with their tokens.
    Delete {
        /// The user's login name.
        name: String,
    },
    /// List the users.
    List,
}

#[derive(Subcommand)]
pub(super) enum TokenCommand {
    /// Create a personal access token for USER; prints the secret once.
    Create {
        /// The user the token acts for.
        user: String,
        /// A name to tell the token by.
        #[arg(long)]
        name: String,
        /// read_registry, write_registry, delete_registry (comma separated).
        #[arg(long, default_value = "read_registry")]
        scopes: String,
        /// Days until it expires (none: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Create a deploy token for NAMESPACE; prints the login name and secret once.
    Deploy {
        /// The namespace the token may reach.
        namespace: String,
        /// A name to tell the token by.
        #[arg(long)]
        name: String,
        /// read_registry, write_registry, delete_registry (comma separated).
        #[arg(long, default_value = "read_registry")]
        scopes: String,
        /// Days until it expires (none: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List the tokens of a user, or of a namespace with --namespace.
    List {
        /// The user whose tokens to list.
        user: Option<String>,
        /// List the deploy tokens of this namespace instead.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Revoke a token.
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
    },
}

#[derive(Subcommand)]
pub(super) enum NamespaceCommand {
    /// Create a namespace, optionally with its first owner.
    Create {
        /// The namespace, e.g. team.
        name: String,
        /// The default visibility of its repositories: public, internal or private.
        #[arg(long)]
        visibility: Option<String>,
        /// A user to make its owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Set the default visibility of the namespace's repositories.
    Visibility {
        /// The namespace, e.g. team.
        name: String,
        /// public, internal or private.
        visibility: String,
    },
    /// Add a member or change their role (guest, reporter, developer, maintainer, owner).
    Member {
        /// The namespace, e.g. team.
        name: String,
        /// The user's login name.
        user: String,
        /// guest, reporter, developer, maintainer or owner.
        role: String,
    },
    /// Remove a member.
    RemoveMember {
        /// The namespace, e.g. team.
        name: String,
        /// The user's login name.
        user: String,
    },
    /// List the members.
    Members {
        /// The namespace, e.g. team.
        name: String,
    },
}

/// `berth user …`.
pub(super) async fn user(index: &IndexArgs, command: UserCommand) -> anyhow::Result<()> {
    let auth = open_auth(&index.load()?).await?;
    let me = Identity::local_admin();
    match command {
        UserCommand::Create { name, admin } => {
            auth.create_user(&me, &name, &read_password()?, admin)
                .await?;
            println!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::Passwd { name } => {
            auth.set_password(&me, &name, &read_password()?).await?;
            println!("password of {name} changed");
        }
        UserCommand::Delete { name } => {
            auth.delete_user(&me, &name).await?;
            println!("deleted user {name} with their tokens");
        }
        UserCommand::List => {
            for u in auth.list_users(&me, "", u32::MAX).await? {
                println!("{}\t{}", u.name, if u.admin { "admin" } else { "" });
            }
        }
    }
    Ok(())
}

/// `berth token …`.
pub(super) async fn token(index: &IndexArgs, command: TokenCommand) -> anyhow::Result<()> {
    let config = index.load()?;
    let auth = open_auth(&config).await?;
    let me = Identity::local_admin();
    let request = |name: String, scopes: &str, days: Option<u32>| TokenRequest {
        name,
        scopes: scopes.split(',').map(|s| s.trim().to_owned()).collect(),
        expires_at: days.map(|d| config.clock.now() + i64::from(d) * 86_400),
    };
    match command {
        TokenCommand::Create {
            user,
            name,
            scopes,
            expires_days,
        } => {
            let t = auth
                .create_personal_token(&me, &user, &request(name, &scopes, expires_days))
                .await?;
            print_secret(&t);
        }
        TokenCommand::Deploy {
            namespace,
            name,
            scopes,
            expires_days,
        } => {
            let t = auth
                .create_deploy_token(&me, &namespace, &request(name, &scopes, expires_days))
                .await?;
            print_secret(&t);
        }
        TokenCommand::List { user, namespace } => {
            let rows = match (user, namespace) {
                (Some(user), None) => auth.list_personal_tokens(&me, &user).await?,
                (None, Some(ns)) => auth.list_deploy_tokens(&me, &ns).await?,
                _ => anyhow::bail!("name a user, or a namespace with --namespace"),
            };
            for t in rows {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{state}",
                    t.id, t.username, t.name, t.scopes
                );
            }
        }
        TokenCommand::Revoke { id } => {
            auth.revoke_token(&me, id).await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// `berth namespace …`.
pub(super) async fn namespace(index: &IndexArgs, command: NamespaceCommand) -> anyhow::Result<()> {
    let auth = open_auth(&index.load()?).await?;
    let me = Identity::local_admin();
    match command {
        NamespaceCommand::Create {
            name,
            visibility,
            owner,
        } => {
            let visibility = visibility.as_deref().map(parse_visibility).transpose()?;
            auth.create_namespace(&me, &name, visibility, owner.as_deref())
                .await?;
            println!("created namespace {name}");
        }
        NamespaceCommand::Visibility { name, visibility } => {
            auth.set_namespace_visibility(&me, &name, parse_visibility(&visibility)?)
                .await?;
            println!("namespace {name} is now {visibility} by default");
        }
        NamespaceCommand::Member { name, user, role } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown role {role:?}: guest, reporter, developer, maintainer or owner"
                )
            })?;
            auth.set_member(&me, &name, &user, role).await?;
            println!("{user} is {role:?} in {name}");
        }
        NamespaceCommand::RemoveMember { name, user } => {
            auth.remove_member(&me, &name, &user).await?;
            println!("{user} removed from {name}");
        }
        NamespaceCommand::Members { name } => {
            for m in auth.list_members(&me, &name).await? {
                let role = Role::from_level(m.role).map(|r| format!("{r:?}"));
                println!("{}\t{}", m.user, role.unwrap_or_default().to_lowercase());
            }
        }
    }
    Ok(())
}

/// `berth visibility REPOSITORY VISIBILITY`.
pub(super) async fn repository_visibility(
    index: &IndexArgs,
    repository: &str,
    visibility: &str,
) -> anyhow::Result<()> {
    let auth = open_auth(&index.load()?).await?;
    let repo: RepoName = repository
        .parse()
        .map_err(|e| anyhow::anyhow!("{repository:?}: {e}"))?;
    auth.set_repository_visibility(
        &Identity::local_admin(),
        &repo,
        parse_visibility(visibility)?,
    )
    .await?;
    println!("{repository} is now {visibility}");
    Ok(())
}

/// The access-control service over the configured database.
async fn open_auth(config: &Config) -> anyhow::Result<Auth> {
    let mut config = config.clone();
    // Offline commands commit durably (SQLite synchronous=FULL) whatever the server runs with.
    config.durability.fsync = true;
    let meta = berth::meta::Meta::open(&config).await?;
    Auth::open(meta, &config.auth, config.clock.clone()).await
}

fn parse_visibility(s: &str) -> anyhow::Result<Visibility> {
    Visibility::parse(s)
        .ok_or_else(|| anyhow::anyhow!("unknown visibility {s:?}: public, internal or private"))
}

/// The first line of standard input (so that passwords stay out of the process list).
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn print_secret(t: &NewTokenSecret) {
    println!("id:       {}", t.id);
    println!("username: {}", t.username);
    println!("scopes:   {}", t.scopes.join(","));
    println!("token:    {}", t.secret);
    eprintln!("The token is shown only now: store it (it is kept only as a hash).");
}
