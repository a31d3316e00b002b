use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// One row of the offers table, as printed in the product's offers.
struct Offer {
    visio: Option<(Option<u64>, u32)>,
    members: u32,
    admins: Option<u32>,
    photos_per_post: u32,
    videos_per_post: u32,
    storage_gb: u64,
}

fn check(tier: Tier, offer: Offer) {
    let policy = *TierTable::offers().policy(tier);
    let visio = policy.visio.map(|v| (v.max_duration.map(|d| d.as_secs() / 60), v.max_participants));
    assert_eq!(visio, offer.visio, "{tier} visio");
    assert_eq!(policy.max_members, offer.members, "{tier} members");
    assert_eq!(policy.max_admins, offer.admins, "{tier} admins");
    assert_eq!(policy.max_photos_per_post, offer.photos_per_post, "{tier} photos");
    assert_eq!(policy.max_videos_per_post, offer.videos_per_post, "{tier} videos");
    assert_eq!(policy.storage_quota_bytes, offer.storage_gb * 1_000_000_000, "{tier} storage");
    assert_eq!(policy.max_video_duration, Duration::from_secs(600), "{tier} video length");
}

#[test]
fn table_matches_the_offers() {
    #[rustfmt::skip]
    let rows = [
        (Tier::Free,     Offer { visio: None,               members: 50,  admins: Some(1), photos_per_post: 10, videos_per_post: 1, storage_gb: 1 }),
        (Tier::Initial,  Offer { visio: None,               members: 100, admins: Some(2), photos_per_post: 20, videos_per_post: 1, storage_gb: 5 }),
        (Tier::Standard, Offer { visio: Some((Some(30), 8)), members: 200, admins: Some(4), photos_per_post: 36, videos_per_post: 2, storage_gb: 10 }),
        (Tier::Plus,     Offer { visio: Some((None, 70)),    members: 400, admins: None,    photos_per_post: 36, videos_per_post: 3, storage_gb: 20 }),
    ];
    for (tier, offer) in rows {
        check(tier, offer);
    }
}

#[test]
fn tiers_parse_and_print() {
    for tier in Tier::ALL {
        assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        assert_eq!(serde_json::to_string(&tier).unwrap(), format!("\"{tier}\""));
    }
    assert!("gold".parse::<Tier>().is_err());
    assert!(serde_json::from_str::<Tier>("\"Plus\"").is_err());
}

#[test]
fn overrides_replace_only_the_fields_given() {
    let yaml = "
free:
  max_members: 60
  visio: { max_duration: 600, max_participants: 4 }
plus:
  max_admins: 10
standard:
  visio: null
";
    let overrides: BTreeMap<Tier, TierPolicyOverride> = serde_yaml::from_str(yaml).unwrap();
    let table = TierTable::with_overrides(&overrides);

    let free = table.policy(Tier::Free);
    assert_eq!(free.max_members, 60);
    assert_eq!(
        free.visio,
        Some(VisioPolicy { max_duration: Some(Duration::from_secs(600)), max_participants: 4 })
    );
    assert_eq!(free.max_photos_per_post, 10, "untouched fields keep the offer");

    assert_eq!(table.policy(Tier::Plus).max_admins, Some(10));
    assert_eq!(table.policy(Tier::Plus).max_members, 400);
    assert_eq!(table.policy(Tier::Standard).visio, None, "null turns visio off");
    assert_eq!(table.policy(Tier::Initial), &TierPolicy::offer(Tier::Initial));
}

#[test]
fn overrides_reject_unknown_fields() {
    let result: Result<TierPolicyOverride, _> = serde_yaml::from_str("max_memebrs: 3");
    assert!(result.is_err());
}
