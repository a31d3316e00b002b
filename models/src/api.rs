//! Bodies of the HTTP API. Every type here is what goes over the wire, documented in OpenAPI.

use serde::{Deserialize, Serialize};

use crate::{ClassId, ClassOptions, Role, Tier, TierPolicy, UserId};

pub use crate::names::{validate_display_name, DisplayNameError, MAX_DISPLAY_NAME_CHARS};

/// `PUT /v1/classes/{class_id}`: create or replace a class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassUpsert {
    #[schema(schema_with = crate::names::class_name_schema)]
    pub name: String,
    pub tier: Tier,
    #[serde(default)]
    pub options: ClassOptionsUpsert,
}

/// The options of a class as the class backend sends them. `visio_allow_unencrypted` is also the
/// teachers' to choose (`PUT .../visio/settings`): left out (or `null`), the class keeps what it
/// has (off for a new class), so that a backend syncing a class does not undo a teacher's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClassOptionsUpsert {
    /// "Confort famille": parents may download photos and videos, not only view them.
    pub confort_famille: bool,
    /// Calls admit browsers that cannot encrypt end to end; absent or `null`: unchanged.
    pub visio_allow_unencrypted: Option<bool>,
}

impl From<ClassOptions> for ClassOptionsUpsert {
    fn from(options: ClassOptions) -> Self {
        ClassOptionsUpsert {
            confort_famille: options.confort_famille,
            visio_allow_unencrypted: Some(options.visio_allow_unencrypted),
        }
    }
}

/// `GET` and `PUT /v1/classes/{class_id}/visio/settings`: the class's call settings that its
/// teachers and admins choose themselves, without the class backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisioSettings {
    /// Calls admit browsers that cannot encrypt end to end
    /// ([`ClassOptions::visio_allow_unencrypted`], which the class backend's `PUT` may set too).
    pub allow_unencrypted: bool,
}

/// A limit of the tier that a class is over, typically after a downgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// More approved members than the tier allows: no new member is accepted until it shrinks.
    Members,
    /// More teachers and admins than the tier allows: nobody new may become one until it shrinks.
    Admins,
}

/// A class as the directory holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClassView {
    pub class_id: ClassId,
    pub name: String,
    pub tier: Tier,
    pub options: ClassOptions,
    /// Approved members of any role.
    pub n_members: u32,
    /// Approved teachers and admins.
    pub n_admins: u32,
    /// Limits of the tier the class is over. A downgrade is accepted, but while this is not empty,
    /// the class takes no new member (or admin) of that kind.
    pub over_limits: Vec<OverLimit>,
}

/// `PUT /v1/classes/{class_id}/members/{user_id}`: add or update a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberUpsert {
    /// Shown to other members. Never an email address or a phone number.
    #[schema(schema_with = crate::names::display_name_schema)]
    pub display_name: String,
    pub role: Role,
    /// Only approved members may join calls or see media.
    pub approved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    pub class_id: ClassId,
    pub user_id: UserId,
    pub display_name: String,
    pub role: Role,
    pub approved: bool,
}

/// What the user may do in a class's calls right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VisioCapabilities {
    /// The tier has visio. A member may join a running session.
    pub allowed: bool,
    /// `null`: no time limit (or no visio).
    pub max_duration_seconds: Option<u64>,
    /// `0` when the tier has no visio.
    pub max_participants: u32,
    pub can_start: bool,
    pub can_moderate: bool,
}

/// What the user may do with the class's photos and videos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaCapabilities {
    pub can_view: bool,
    pub can_upload: bool,
    pub can_download: bool,
    pub max_photos_per_post: u32,
    pub max_videos_per_post: u32,
    pub max_video_duration_seconds: u64,
    pub storage_quota_bytes: u64,
}

/// `GET /v1/classes/{class_id}/capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Capabilities {
    pub class_id: ClassId,
    pub user_id: UserId,
    pub display_name: String,
    pub role: Role,
    pub tier: Tier,
    pub visio: VisioCapabilities,
    pub media: MediaCapabilities,
}

impl Capabilities {
    /// What an approved member with `role` may do in a class of `policy` with `options`.
    pub fn for_member(
        member: &MemberView,
        tier: Tier,
        policy: &TierPolicy,
        options: &ClassOptions,
    ) -> Capabilities {
        let role = member.role;
        let visio = match policy.visio {
            Some(visio) => VisioCapabilities {
                allowed: true,
                max_duration_seconds: visio.max_duration.map(|d| d.as_secs()),
                max_participants: visio.max_participants,
                can_start: role.administers(),
                can_moderate: role.administers(),
            },
            None => VisioCapabilities {
                allowed: false,
                max_duration_seconds: None,
                max_participants: 0,
                can_start: false,
                can_moderate: false,
            },
        };
        Capabilities {
            class_id: member.class_id.clone(),
            user_id: member.user_id.clone(),
            display_name: member.display_name.clone(),
            role,
            tier,
            visio,
            media: MediaCapabilities {
                can_view: true,
                can_upload: role.administers(),
                can_download: options.may_download_media(role),
                max_photos_per_post: policy.max_photos_per_post,
                max_videos_per_post: policy.max_videos_per_post,
                max_video_duration_seconds: policy.max_video_duration.as_secs(),
                storage_quota_bytes: policy.storage_quota_bytes,
            },
        }
    }
}

/// `GET /v1/retention/scheduled`: a class nobody has used for almost two years, and when it will be
/// purged unless a member uses it before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PurgeScheduled {
    pub class_id: ClassId,
    /// Unix seconds of the last use by an approved member.
    pub last_active_at: i64,
    /// Unix seconds of the warning (webhook `class_purge_scheduled`).
    pub warned_at: i64,
    /// Unix seconds after which the class and all its data are deleted: at least a month after
    /// the warning.
    pub purge_at: i64,
}
