//! Cleanup policies: which tags (and untagged images) to remove, decided by a pure function
//! over the tags of a repository ([`evaluate()`]), then applied with re-validated deletes.
//!
//! Three rooms: `rules` holds the wire formats (the API's fields, ECR's lifecycle JSON), their
//! validation and compilation; `evaluate` is the pure engine; `apply` is the registry's side
//! (saving, listing and running policies, bulk tag deletion), which reads and deletes through
//! the index only.
//!
//! Three rule sets, in one policy:
//! - GitLab's fields: `name_regex` selects tags to delete, `name_regex_keep` protects tags
//!   and wins over everything, `keep_n` keeps the N most recent of the selected tags,
//!   `older_than` only deletes tags pushed longer ago than that;
//! - AWS ECR lifecycle rules (`ecr`), with ECR's semantics: rules by ascending
//!   `rulePriority`; an image matched by a rule's tag filter is decided by that rule only (a
//!   lower-priority rule never expires it); `expire` removes the image (manifest and tags);
//! - pull activity: keep what was pulled within a period, keep the N most recently pulled.
//!
//! Keep rules (`name_regex_keep`, pull activity) win over every deletion rule. Patterns are
//! regular expressions matched against the whole tag; ECR's `tagPatternList` uses its own
//! `*` wildcards.

mod apply;
mod evaluate;
mod rules;

pub use apply::{PolicyOutcome, RepositoryRemoval, SavedPolicy};
pub use evaluate::{Removal, evaluate};
pub use rules::{
    CADENCES, Compiled, CountType, EcrAction, EcrPolicy, EcrRule, EcrSelection, InvalidPattern,
    Policy, PolicyRules, RulesError, TagStatus, compile, parse_duration,
};
