//! The access decision: [`decide`] is the one function that says whether an identity may do
//! an action on a repository. It is pure: callers gather the facts (visibility, role) first.

use serde::{Deserialize, Serialize};

pub use crate::oci::Visibility;

/// GitLab's roles, in increasing order of power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Member without registry access to private content.
    Guest = 10,
    /// Pull.
    Reporter = 20,
    /// Pull and push.
    Developer = 30,
    /// Also delete and manage policies.
    Maintainer = 40,
    /// Also members and visibility.
    Owner = 50,
}

impl Role {
    /// The role stored as `level` (its numeric value); `None` for an unknown level.
    pub fn from_level(level: i64) -> Option<Role> {
        [
            Role::Guest,
            Role::Reporter,
            Role::Developer,
            Role::Maintainer,
            Role::Owner,
        ]
        .into_iter()
        .find(|r| *r as i64 == level)
    }

    /// A role by name, in any case (`developer`, `Maintainer`).
    pub fn parse(s: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).ok()
    }
}

/// What can be done to a repository (or its namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs, push manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Maintainer work: policies, protected tags.
    Maintain,
    /// Owner work: members, visibility.
    Own,
}

/// The registry scopes a token may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    /// `read_registry`: pull.
    pub read: bool,
    /// `write_registry`: push.
    pub write: bool,
    /// `delete_registry`: delete.
    pub delete: bool,
}

impl Scopes {
    /// Every scope's name, in the order [`Scopes::names`] lists them.
    pub const ALL: [&'static str; 3] = ["read_registry", "write_registry", "delete_registry"];

    /// Parses `read_registry,write_registry,...` (commas or spaces); unknown names are errors.
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            match part {
                "read_registry" => scopes.read = true,
                "write_registry" => scopes.write = true,
                "delete_registry" => scopes.delete = true,
                other => {
                    return Err(format!(
                        "unknown scope {other:?}: expected read_registry, write_registry or delete_registry"
                    ));
                }
            }
        }
        if scopes == Scopes::default() {
            return Err("a token needs at least one scope".into());
        }
        Ok(scopes)
    }

    /// The names of the scopes this holds.
    pub fn names(&self) -> Vec<&'static str> {
        [self.read, self.write, self.delete]
            .into_iter()
            .zip(Scopes::ALL)
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable subject: `anonymous`, `user:<id>`, `token:<id>`.
    pub subject: String,
    /// What the audit log shows (a user name, `alice (token ci)`, ...).
    pub name: String,
    /// The user acting (the owner of a personal token); `None` for anonymous and deploy tokens.
    pub user: Option<(i64, String)>,
    /// An administrator (everything, everywhere; a token of one is still limited by scopes).
    pub admin: bool,
    /// A token's limits; `None` for a password login (everything the user may do).
    pub scopes: Option<Scopes>,
    /// A deploy token's namespace.
    pub namespace: Option<String>,
}

impl Identity {
    /// Nobody: a request without credentials.
    pub fn anonymous() -> Identity {
        Identity {
            subject: "anonymous".into(),
            name: "anonymous".into(),
            user: None,
            admin: false,
            scopes: None,
            namespace: None,
        }
    }

    /// Neither a user nor a deploy token.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none() && self.namespace.is_none()
    }
}

/// The facts about one repository that access depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// First path component of the repository name.
    pub namespace: &'a str,
    /// The repository's visibility (its own, its namespace's, or the default).
    pub visibility: Visibility,
    /// The user's role in the namespace, if a member.
    pub role: Option<Role>,
}

/// May `who` do `action` on `target`? The one place that answers.
pub fn decide(who: &Identity, target: &Target<'_>, action: Action) -> bool {
    // A token never does more than its scopes, whoever owns it; management needs a password
    // login (or the CLI on the server).
    if let Some(scopes) = who.scopes {
        let scoped = match action {
            Action::Pull => scopes.read,
            Action::Push => scopes.write,
            Action::Delete => scopes.delete,
            Action::Maintain | Action::Own => false,
        };
        if !scoped {
            return false;
        }
    }
    if let Some(ns) = &who.namespace {
        // A deploy token works in its namespace (scopes decide), elsewhere like anonymous.
        return ns == target.namespace
            || (action == Action::Pull && target.visibility == Visibility::Public);
    }
    let role = if who.admin {
        Some(Role::Owner)
    } else {
        match &who.user {
            // Every user owns the namespace named after them.
            Some((_, name)) if name == target.namespace => Some(Role::Owner),
            _ => target.role,
        }
    };
    let at_least = |r: Role| role.is_some_and(|have| have >= r);
    match action {
        Action::Pull => match target.visibility {
            Visibility::Public => true,
            Visibility::Internal => who.user.is_some() || at_least(Role::Reporter),
            Visibility::Private => at_least(Role::Reporter),
        },
        Action::Push => at_least(Role::Developer),
        Action::Delete | Action::Maintain => at_least(Role::Maintainer),
        Action::Own => at_least(Role::Owner),
    }
}

/// What a caller may do on one repository, decided once per request and handed to handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    /// May pull.
    pub pull: bool,
    /// May push.
    pub push: bool,
    /// May delete.
    pub delete: bool,
    /// Maintainer rights (protected tags, policies).
    pub maintain: bool,
}

impl Grant {
    /// Everything: auth disabled.
    pub const ALL: Grant = Grant {
        pull: true,
        push: true,
        delete: true,
        maintain: true,
    };

    /// What `who` may do on `target`, every action decided by [`decide`].
    pub fn of(who: &Identity, target: &Target<'_>) -> Grant {
        Grant {
            pull: decide(who, target, Action::Pull),
            push: decide(who, target, Action::Push),
            delete: decide(who, target, Action::Delete),
            maintain: decide(who, target, Action::Maintain),
        }
    }

    /// Whether this grant allows `action` (owner work counts as maintainer work here).
    pub fn allows(&self, action: Action) -> bool {
        match action {
            Action::Pull => self.pull,
            Action::Push => self.push,
            Action::Delete => self.delete,
            Action::Maintain | Action::Own => self.maintain,
        }
    }

    /// The actions of a token scope (`pull`, `push`, `delete`) this grant allows.
    pub fn intersect(&self, actions: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in actions {
            let one = [a.as_str()];
            let names: &[&str] = if a == "*" {
                &["pull", "push", "delete"]
            } else {
                &one
            };
            for name in names {
                let ok = match *name {
                    "pull" => self.pull,
                    "push" => self.push,
                    "delete" => self.delete,
                    _ => false,
                };
                if ok && !out.iter().any(|o| o == name) {
                    out.push((*name).to_owned());
                }
            }
        }
        out
    }

    /// Keeps only what a token's `actions` for this repository allow.
    pub fn limit_to(self, actions: &[String]) -> Grant {
        let has = |a: &str| actions.iter().any(|x| x == a || x == "*");
        Grant {
            pull: self.pull && has("pull"),
            push: self.push && has("push"),
            delete: self.delete && has("delete"),
            // Tokens carry registry actions only; maintainer rights need push in the token.
            maintain: self.maintain && has("push"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, name: &str) -> Identity {
        Identity {
            subject: format!("user:{id}"),
            name: name.into(),
            user: Some((id, name.into())),
            admin: false,
            scopes: None,
            namespace: None,
        }
    }

    fn target(visibility: Visibility, role: Option<Role>) -> Target<'static> {
        Target {
            namespace: "team",
            visibility,
            role,
        }
    }

    #[test]
    fn roles_climb_the_ladder() {
        let bob = user(2, "bob");
        let private = |role| Grant::of(&bob, &target(Visibility::Private, role));
        assert_eq!(private(None), Grant::default());
        assert_eq!(private(Some(Role::Guest)), Grant::default());
        assert!(private(Some(Role::Reporter)).pull && !private(Some(Role::Reporter)).push);
        assert!(private(Some(Role::Developer)).push && !private(Some(Role::Developer)).delete);
        assert_eq!(private(Some(Role::Maintainer)), Grant::ALL);
        assert!(decide(
            &bob,
            &target(Visibility::Private, Some(Role::Owner)),
            Action::Own
        ));
        assert!(!decide(
            &bob,
            &target(Visibility::Private, Some(Role::Maintainer)),
            Action::Own
        ));
    }

    #[test]
    fn visibility_opens_pull_only() {
        let anon = Identity::anonymous();
        assert!(decide(
            &anon,
            &target(Visibility::Public, None),
            Action::Pull
        ));
        assert!(!decide(
            &anon,
            &target(Visibility::Public, None),
            Action::Push
        ));
        assert!(!decide(
            &anon,
            &target(Visibility::Internal, None),
            Action::Pull
        ));
        assert!(decide(
            &user(3, "carol"),
            &target(Visibility::Internal, None),
            Action::Pull
        ));
    }

    #[test]
    fn tokens_never_exceed_their_scopes() {
        let mut pat = user(1, "team");
        pat.scopes = Some(Scopes::parse("read_registry").unwrap());
        let t = target(Visibility::Private, None);
        assert!(decide(&pat, &t, Action::Pull));
        assert!(!decide(&pat, &t, Action::Push));
        assert!(!decide(&pat, &t, Action::Own));
        let deploy = Identity {
            subject: "token:9".into(),
            name: "team+ci".into(),
            user: None,
            admin: false,
            scopes: Some(Scopes::parse("read_registry,write_registry").unwrap()),
            namespace: Some("team".into()),
        };
        assert!(decide(&deploy, &t, Action::Push));
        assert!(!decide(&deploy, &t, Action::Delete));
        let elsewhere = Target {
            namespace: "other",
            ..t
        };
        assert!(!decide(&deploy, &elsewhere, Action::Pull));
        assert!(Scopes::parse("admin").is_err());
    }

    #[test]
    fn token_actions_intersect() {
        let g = Grant {
            pull: true,
            push: false,
            delete: false,
            maintain: false,
        };
        assert_eq!(g.intersect(&["pull".into(), "push".into()]), ["pull"]);
        assert_eq!(g.intersect(&["*".into()]), ["pull"]);
        assert!(!Grant::ALL.limit_to(&["pull".into()]).push);
    }
}
