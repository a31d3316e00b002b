//! The offers, as data.
//!
//! [`TierTable::offers`] is the table of the product's offers. Values the offers do not state are our
//! defaults and are marked `ours` below. Every value can be overridden by configuration through
//! [`TierPolicyOverride`]; nothing else in the code base may hard-code a tier limit.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The four offers. Ordered from the smallest to the largest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Free,
    Initial,
    Standard,
    Plus,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Initial, Tier::Standard, Tier::Plus];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Initial => "initial",
            Tier::Standard => "standard",
            Tier::Plus => "plus",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?}: expected one of free, initial, standard, plus")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(raw: &str) -> Result<Self, UnknownTier> {
        Tier::ALL.into_iter().find(|tier| tier.as_str() == raw).ok_or_else(|| UnknownTier(raw.to_owned()))
    }
}

/// What a tier allows for class calls. A tier without visio has no `VisioPolicy` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisioPolicy {
    /// `None`: no time limit.
    #[serde(with = "opt_secs")]
    pub max_duration: Option<Duration>,
    /// People at once in one session, moderators included.
    pub max_participants: u32,
}

/// Everything a tier decides. `None` on a limit means "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    /// `None`: the tier has no visio.
    pub visio: Option<VisioPolicy>,
    /// Approved members of any role.
    pub max_members: u32,
    /// Approved members who administer the class: teachers and admins together.
    pub max_admins: Option<u32>,
    pub max_photos_per_post: u32,
    pub max_videos_per_post: u32,
    #[serde(with = "secs")]
    pub max_video_duration: Duration,
    /// Bytes of stored media per class. 1 GB is 10^9 bytes, as in the offers.
    pub storage_quota_bytes: u64,
}

const GB: u64 = 1_000_000_000;
const MINUTE: Duration = Duration::from_secs(60);

/// A video is at most 10 minutes on every tier.
pub const MAX_VIDEO_DURATION: Duration = Duration::from_secs(10 * 60);

impl TierPolicy {
    pub fn has_visio(&self) -> bool {
        self.visio.is_some()
    }

    /// The offers. `ours` marks values the offers do not state.
    pub fn offer(tier: Tier) -> TierPolicy {
        match tier {
            Tier::Free => TierPolicy {
                visio: None,
                max_members: 50,         // ours
                max_admins: Some(1),     // ours
                max_photos_per_post: 10, // ours
                max_videos_per_post: 1,  // ours
                max_video_duration: MAX_VIDEO_DURATION,
                storage_quota_bytes: GB, // ours
            },
            Tier::Initial => TierPolicy {
                visio: None,
                max_members: 100,
                max_admins: Some(2),
                max_photos_per_post: 20,
                max_videos_per_post: 1, // ours
                max_video_duration: MAX_VIDEO_DURATION,
                storage_quota_bytes: 5 * GB,
            },
            Tier::Standard => TierPolicy {
                visio: Some(VisioPolicy { max_duration: Some(30 * MINUTE), max_participants: 8 }),
                max_members: 200,
                max_admins: Some(4),
                max_photos_per_post: 36,
                max_videos_per_post: 2,
                max_video_duration: MAX_VIDEO_DURATION,
                storage_quota_bytes: 10 * GB,
            },
            Tier::Plus => TierPolicy {
                visio: Some(VisioPolicy { max_duration: None, max_participants: 70 }),
                max_members: 400,
                max_admins: None,
                max_photos_per_post: 36,
                max_videos_per_post: 3,
                max_video_duration: MAX_VIDEO_DURATION,
                storage_quota_bytes: 20 * GB,
            },
        }
    }
}

/// A partial policy from configuration: the fields given replace the offer's, the others stay.
///
/// `visio: null` in YAML turns visio off for the tier; leaving `visio` out keeps the offer's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicyOverride {
    #[serde(deserialize_with = "some_nullable", skip_serializing_if = "Option::is_none")]
    pub visio: Option<Option<VisioPolicy>>,
    pub max_members: Option<u32>,
    #[serde(deserialize_with = "some_nullable", skip_serializing_if = "Option::is_none")]
    pub max_admins: Option<Option<u32>>,
    pub max_photos_per_post: Option<u32>,
    pub max_videos_per_post: Option<u32>,
    pub max_video_duration_secs: Option<u64>,
    pub storage_quota_bytes: Option<u64>,
}

/// Tells "field absent" (outer `None`, from `default`) apart from "field is null" (`Some(None)`).
fn some_nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl TierPolicyOverride {
    pub fn apply(&self, mut policy: TierPolicy) -> TierPolicy {
        if let Some(visio) = self.visio {
            policy.visio = visio;
        }
        if let Some(max_members) = self.max_members {
            policy.max_members = max_members;
        }
        if let Some(max_admins) = self.max_admins {
            policy.max_admins = max_admins;
        }
        if let Some(n) = self.max_photos_per_post {
            policy.max_photos_per_post = n;
        }
        if let Some(n) = self.max_videos_per_post {
            policy.max_videos_per_post = n;
        }
        if let Some(secs) = self.max_video_duration_secs {
            policy.max_video_duration = Duration::from_secs(secs);
        }
        if let Some(bytes) = self.storage_quota_bytes {
            policy.storage_quota_bytes = bytes;
        }
        policy
    }
}

/// The policy of every tier, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierTable {
    policies: [TierPolicy; 4],
}

impl Default for TierTable {
    fn default() -> Self {
        Self::offers()
    }
}

impl TierTable {
    pub fn offers() -> TierTable {
        TierTable { policies: Tier::ALL.map(TierPolicy::offer) }
    }

    /// The offers with configuration overrides applied.
    pub fn with_overrides(overrides: &BTreeMap<Tier, TierPolicyOverride>) -> TierTable {
        let mut table = TierTable::offers();
        for (tier, tier_override) in overrides {
            table.policies[*tier as usize] = tier_override.apply(table.policies[*tier as usize]);
        }
        table
    }

    pub fn policy(&self, tier: Tier) -> &TierPolicy {
        &self.policies[tier as usize]
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => s.serialize_some(&duration.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests;
