//! Roles and class options, and what they allow.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role in one class. A user may have different roles in different classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Teacher,
    Admin,
    Parent,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Teacher, Role::Admin, Role::Parent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Admin => "admin",
            Role::Parent => "parent",
        }
    }

    /// Teachers and admins administer the class: they count against the tier's admin limit, start
    /// and moderate sessions and publish media.
    pub fn administers(self) -> bool {
        matches!(self, Role::Teacher | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of teacher, admin, parent")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(raw: &str) -> Result<Self, UnknownRole> {
        Role::ALL.into_iter().find(|role| role.as_str() == raw).ok_or_else(|| UnknownRole(raw.to_owned()))
    }
}

/// Options the class backend sets on a class, independent of its tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClassOptions {
    /// "Confort famille": parents may download photos and videos, not only view them.
    pub confort_famille: bool,
    /// Calls admit browsers that cannot encrypt end to end (no WebRTC encoded transforms). Off by
    /// default: every call is end-to-end encrypted. When such a browser is in a call, the others
    /// send in clear for it and every page says that the call is not end-to-end encrypted.
    pub visio_allow_unencrypted: bool,
}

impl ClassOptions {
    pub fn may_download_media(&self, role: Role) -> bool {
        role.administers() || self.confort_famille
    }
}

#[cfg(test)]
mod tests;
