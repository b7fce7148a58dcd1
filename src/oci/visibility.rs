//! Repository visibility: who may pull without being a member.

use serde::{Deserialize, Serialize};

/// Who may pull a repository without being a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone, anonymous included.
    Public,
    /// Any signed-in user.
    Internal,
    /// Members (reporter and up) only.
    Private,
}

impl Visibility {
    /// The lowercase name stored in the index and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Internal => "internal",
            Visibility::Private => "private",
        }
    }

    /// Parses a name in any case; `None` for anything else.
    pub fn parse(s: &str) -> Option<Visibility> {
        match s.to_ascii_lowercase().as_str() {
            "public" => Some(Visibility::Public),
            "internal" => Some(Visibility::Internal),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}
