//! Callers, actions and the rules that grant them per repository pattern.
//!
//! A policy file (TOML) lists groups and rules; each rule names repositories by pattern,
//! who it applies to (users, groups, any signed-in user, anonymous callers) and the
//! actions it grants. What a caller may do on a repository is the union of the actions of
//! every rule that matches both; nothing is granted otherwise.
//!
//! ```toml
//! anonymous_pull = false
//!
//! [groups]
//! dev = ["alice", "bob"]
//!
//! [[rule]]
//! repositories = ["team/**"]
//! groups = ["dev"]
//! allow = ["pull", "push"]
//!
//! [[rule]]
//! repositories = ["**"]
//! users = ["admin"]
//! allow = ["pull", "push", "delete"]
//! ```
//!
//! Patterns match a repository name segment by segment (segments are separated by `/`):
//! `*` inside a segment matches any characters of that segment, and a segment `**` matches
//! any number of segments, none included. `team/*` matches `team/app` but not
//! `team/app/api`; `team/**` matches both, and `team` too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use crate::AuthError;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags.
    Pull,
    /// Upload blobs and manifests, mount blobs into it.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);

    fn bit(a: Action) -> u8 {
        match a {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }

    pub fn with(self, a: Action) -> Actions {
        Actions(self.0 | Self::bit(a))
    }

    pub fn contains(self, a: Action) -> bool {
        self.0 & Self::bit(a) != 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        iter.into_iter().fold(Actions::NONE, Actions::with)
    }
}

/// Who sends a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User {
        name: String,
        /// Groups the user belongs to beyond those of the policy (a token server's claim).
        groups: BTreeSet<String>,
    },
}

impl Caller {
    pub fn user(name: &str) -> Caller {
        Caller::User {
            name: name.to_string(),
            groups: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User { name, .. } => Some(name),
        }
    }
}

/// A repository name pattern (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, AuthError> {
        if text.is_empty() {
            return Err(AuthError::Policy("an empty repository pattern".into()));
        }
        let segments: Vec<String> = text.split('/').map(str::to_string).collect();
        if let Some(bad) = segments
            .iter()
            .find(|s| s.is_empty() || (s.contains("**") && s.as_str() != "**"))
        {
            return Err(AuthError::Policy(format!(
                "repository pattern {text:?}: segment {bad:?} is empty or mixes ** with other characters"
            )));
        }
        Ok(Pattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, repository: &str) -> bool {
        let name: Vec<&str> = repository.split('/').collect();
        let pattern: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        segments_match(&pattern, &name)
    }
}

/// Whether `pattern` (segments, `**` among them) matches the segments of `name`.
fn segments_match(pattern: &[&str], name: &[&str]) -> bool {
    // reachable[j]: the pattern so far matches the first j segments of the name.
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    for p in pattern {
        let mut next = vec![false; name.len() + 1];
        if *p == "**" {
            let mut any = false;
            for j in 0..=name.len() {
                any |= reachable[j];
                next[j] = any;
            }
        } else {
            for j in 0..name.len() {
                if reachable[j] && glob_match(p.as_bytes(), name[j].as_bytes()) {
                    next[j + 1] = true;
                }
            }
        }
        reachable = next;
    }
    reachable[name.len()]
}

/// Whether `pattern` (with `*` for any run of characters) matches all of `text`.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Greedy with one backtrack point: the classic wildcard walk, linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Who a rule applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subjects {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Every signed-in user.
    pub any_user: bool,
    /// Callers without credentials.
    pub anonymous: bool,
}

/// Actions granted on the repositories matching any of `repositories` to `subjects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub repositories: Vec<Pattern>,
    pub subjects: Subjects,
    pub allow: Actions,
}

/// The rules of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    groups: BTreeMap<String, BTreeSet<String>>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    anonymous_pull: bool,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    repositories: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    any_user: bool,
    #[serde(default)]
    anonymous: bool,
    allow: Vec<String>,
}

impl Policy {
    /// Every signed-in user may do everything; anonymous callers nothing (the policy of a
    /// node given users and no policy file).
    pub fn users_do_everything() -> Policy {
        Policy {
            groups: BTreeMap::new(),
            rules: vec![Rule {
                repositories: vec![Pattern {
                    text: "**".into(),
                    segments: vec!["**".into()],
                }],
                subjects: Subjects {
                    any_user: true,
                    ..Subjects::default()
                },
                allow: Action::ALL.into_iter().collect(),
            }],
        }
    }

    /// This policy, and anonymous callers may pull every repository.
    pub fn with_anonymous_pull(mut self) -> Policy {
        self.rules.push(Rule {
            repositories: vec![Pattern {
                text: "**".into(),
                segments: vec!["**".into()],
            }],
            subjects: Subjects {
                anonymous: true,
                ..Subjects::default()
            },
            allow: Actions::NONE.with(Action::Pull),
        });
        self
    }

    /// Reads a policy file's text.
    pub fn from_toml(text: &str) -> Result<Policy, AuthError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| AuthError::Policy(e.message().to_string()))?;
        let groups: BTreeMap<String, BTreeSet<String>> = file
            .groups
            .into_iter()
            .map(|(g, members)| (g, members.into_iter().collect()))
            .collect();
        let mut rules = Vec::new();
        for (i, r) in file.rules.into_iter().enumerate() {
            let n = i + 1;
            if r.repositories.is_empty() {
                return Err(AuthError::Policy(format!("rule {n} names no repositories")));
            }
            let repositories = r
                .repositories
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut allow = Actions::NONE;
            for a in &r.allow {
                let action = Action::parse(a).ok_or_else(|| {
                    AuthError::Policy(format!(
                        "rule {n}: unknown action {a:?} (pull, push or delete)"
                    ))
                })?;
                allow = allow.with(action);
            }
            if let Some(g) = r.groups.iter().find(|g| !groups.contains_key(*g)) {
                return Err(AuthError::Policy(format!("rule {n}: no group {g:?}")));
            }
            let subjects = Subjects {
                users: r.users.into_iter().collect(),
                groups: r.groups.into_iter().collect(),
                any_user: r.any_user,
                anonymous: r.anonymous,
            };
            if subjects == Subjects::default() {
                return Err(AuthError::Policy(format!(
                    "rule {n} applies to nobody (users, groups, any_user or anonymous)"
                )));
            }
            rules.push(Rule {
                repositories,
                subjects,
                allow,
            });
        }
        let policy = Policy { groups, rules };
        Ok(if file.anonymous_pull {
            policy.with_anonymous_pull()
        } else {
            policy
        })
    }

    fn applies(&self, subjects: &Subjects, caller: &Caller) -> bool {
        match caller {
            Caller::Anonymous => subjects.anonymous,
            Caller::User { name, groups } => {
                subjects.any_user
                    || subjects.users.contains(name)
                    || subjects.groups.iter().any(|g| {
                        groups.contains(g)
                            || self
                                .groups
                                .get(g)
                                .is_some_and(|members| members.contains(name))
                    })
            }
        }
    }

    /// What `caller` may do on `repository`.
    pub fn allowed(&self, caller: &Caller, repository: &str) -> Actions {
        self.rules
            .iter()
            .filter(|r| self.applies(&r.subjects, caller))
            .filter(|r| r.repositories.iter().any(|p| p.matches(repository)))
            .fold(Actions::NONE, |acc, r| acc.union(r.allow))
    }

    /// Whether `caller` may do `action` on `repository`.
    pub fn allows(&self, caller: &Caller, repository: &str, action: Action) -> bool {
        self.allowed(caller, repository).contains(action)
    }

    /// Whether `repository` is listed to `caller` (in `_catalog`): it may do anything there.
    pub fn visible(&self, caller: &Caller, repository: &str) -> bool {
        !self.allowed(caller, repository).is_empty()
    }

    /// Whether anonymous callers may do anything at all (else every request needs
    /// credentials and gets a challenge first).
    pub fn anonymous_anywhere(&self) -> bool {
        self.rules.iter().any(|r| r.subjects.anonymous)
    }
}

/// A token scope: `repository:NAME:ACTION[,ACTION...]` (the Docker/OCI token flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub repository: String,
    pub actions: Actions,
}

impl Scope {
    /// Parses one scope; actions other than pull, push and delete (`*` included) are
    /// ignored, as token servers do with what they do not grant.
    pub fn parse(text: &str) -> Result<Scope, AuthError> {
        let bad = |why: &str| AuthError::Scope(text.to_string(), why.to_string());
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("no resource type"))?;
        if kind != "repository" {
            return Err(bad("only repository scopes are known"));
        }
        // The name may hold a registry host with a port (`host:5000/name`): the actions
        // follow the last colon.
        let (repository, actions) = rest.rsplit_once(':').ok_or_else(|| bad("no actions"))?;
        if repository.is_empty() {
            return Err(bad("no repository name"));
        }
        let actions = actions.split(',').filter_map(Action::parse).collect();
        Ok(Scope {
            repository: repository.to_string(),
            actions,
        })
    }

    /// The scope a request for `action` on `repository` needs, as a challenge names it.
    pub fn needed(repository: &str, action: Action) -> Scope {
        Scope {
            repository: repository.to_string(),
            actions: Actions::NONE.with(action),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(Action::as_str).collect();
        write!(f, "repository:{}:{}", self.repository, actions.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::parse(p).unwrap()
    }

    #[test]
    fn patterns_match_segment_by_segment() {
        assert!(pattern("team/*").matches("team/app"));
        assert!(!pattern("team/*").matches("team/app/api"));
        assert!(!pattern("team/*").matches("team"));
        assert!(pattern("team/**").matches("team"));
        assert!(pattern("team/**").matches("team/app/api"));
        assert!(!pattern("team/**").matches("teams/app"));
        assert!(pattern("**").matches("a/b/c"));
        assert!(pattern("**/base").matches("library/base"));
        assert!(pattern("**/base").matches("base"));
        assert!(!pattern("**/base").matches("library/base/x"));
        assert!(pattern("lib*/b*e").matches("library/base"));
        assert!(!pattern("lib*/b*e").matches("library/bases"));
        assert!(pattern("a/**/z").matches("a/b/c/z"));
        assert!(pattern("a/**/z").matches("a/z"));
        assert!(!pattern("a/**/z").matches("a/b/c"));
        assert!(pattern("exact").matches("exact"));
        assert!(!pattern("exact").matches("exactly"));
        for bad in ["", "a//b", "a/**b", "/a"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    const POLICY: &str = r#"
        anonymous_pull = false

        [groups]
        dev = ["alice", "bob"]

        [[rule]]
        repositories = ["team/**"]
        groups = ["dev"]
        allow = ["pull", "push"]

        [[rule]]
        repositories = ["team/readonly"]
        users = ["carol"]
        allow = ["pull"]

        [[rule]]
        repositories = ["public/*"]
        anonymous = true
        any_user = true
        allow = ["pull"]

        [[rule]]
        repositories = ["**"]
        users = ["admin"]
        allow = ["pull", "push", "delete"]
    "#;

    #[test]
    fn a_caller_gets_the_union_of_the_rules_that_match_and_nothing_else() {
        let policy = Policy::from_toml(POLICY).unwrap();
        let alice = Caller::user("alice");
        let carol = Caller::user("carol");
        let admin = Caller::user("admin");
        let anon = Caller::Anonymous;
        assert!(policy.allows(&alice, "team/app", Action::Push));
        assert!(!policy.allows(&alice, "team/app", Action::Delete));
        assert!(!policy.allows(&alice, "other/app", Action::Pull));
        assert!(policy.allows(&carol, "team/readonly", Action::Pull));
        assert!(!policy.allows(&carol, "team/readonly", Action::Push));
        assert!(!policy.allows(&carol, "team/app", Action::Pull));
        assert!(policy.allows(&admin, "any/thing/at/all", Action::Delete));
        assert!(policy.allows(&anon, "public/base", Action::Pull));
        assert!(policy.allows(&carol, "public/base", Action::Pull));
        assert!(!policy.allows(&anon, "public/base", Action::Push));
        assert!(!policy.allows(&anon, "team/app", Action::Pull));
        assert!(policy.anonymous_anywhere());
        // A group a token server vouches for counts like one of the policy.
        let dave = Caller::User {
            name: "dave".into(),
            groups: ["dev".to_string()].into(),
        };
        assert!(policy.allows(&dave, "team/x", Action::Pull));
        assert!(policy.visible(&carol, "team/readonly"));
        assert!(!policy.visible(&carol, "team/app"));
    }

    #[test]
    fn anonymous_pull_and_the_default_for_users() {
        let open = Policy::from_toml("anonymous_pull = true").unwrap();
        assert!(open.allows(&Caller::Anonymous, "x/y", Action::Pull));
        assert!(!open.allows(&Caller::Anonymous, "x/y", Action::Push));
        assert!(!open.allows(&Caller::user("u"), "x/y", Action::Pull));
        let users = Policy::users_do_everything();
        assert!(users.allows(&Caller::user("u"), "x/y", Action::Delete));
        assert!(!users.allows(&Caller::Anonymous, "x/y", Action::Pull));
        assert!(!users.anonymous_anywhere());
    }

    #[test]
    fn a_policy_that_cannot_mean_what_it_says_is_refused() {
        for (text, says) in [
            (
                "[[rule]]\nrepositories = []\nusers = [\"a\"]\nallow = [\"pull\"]",
                "no repositories",
            ),
            (
                "[[rule]]\nrepositories = [\"x\"]\nusers = [\"a\"]\nallow = [\"read\"]",
                "unknown action",
            ),
            (
                "[[rule]]\nrepositories = [\"x\"]\ngroups = [\"g\"]\nallow = [\"pull\"]",
                "no group",
            ),
            (
                "[[rule]]\nrepositories = [\"x\"]\nallow = [\"pull\"]",
                "applies to nobody",
            ),
            (
                "[[rule]]\nrepositories = [\"a//b\"]\nusers = [\"a\"]\nallow = [\"pull\"]",
                "empty",
            ),
            ("anonymous_pul = true", "unknown field"),
        ] {
            let e = Policy::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn scopes_parse_and_render_as_the_token_flow_writes_them() {
        let s = Scope::parse("repository:library/base:pull,push").unwrap();
        assert_eq!(s.repository, "library/base");
        assert!(s.actions.contains(Action::Pull) && s.actions.contains(Action::Push));
        assert_eq!(s.to_string(), "repository:library/base:pull,push");
        let s = Scope::parse("repository:host:5000/a:pull,*").unwrap();
        assert_eq!(s.repository, "host:5000/a");
        assert_eq!(s.actions, Actions::NONE.with(Action::Pull));
        assert_eq!(
            Scope::needed("a/b", Action::Delete).to_string(),
            "repository:a/b:delete"
        );
        for bad in [
            "registry:catalog:*",
            "repository",
            "repository:nopull",
            "repository::pull",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
