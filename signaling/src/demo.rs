//! The demo school of `serve --demo`: one class per tier, a teacher and a few parents each, and
//! tokens to try them with (printed, and on the home page `/`).

use models::api::{ClassUpsert, MemberUpsert};
use models::{ClassId, ClassOptions, Role, Tier, UserId};

use crate::auth::mint_hs256;
use crate::AppState;

/// Demo tokens live half a day: long enough to play, short enough not to linger.
const DEMO_TOKEN_TTL_SECS: u64 = 12 * 3600;

const TEACHER: &str = "Mme Lefèvre";
const PARENTS: [&str; 3] = ["Camille Durand", "Sami Benali", "Jeanne Morel"];

pub struct DemoUser {
    pub class_id: ClassId,
    pub tier: Tier,
    pub user_id: UserId,
    pub display_name: String,
    pub role: Role,
}

pub fn class_id(tier: Tier) -> ClassId {
    ClassId::new(format!("demo-{tier}")).expect("demo class ids are valid")
}

pub fn class_name(tier: Tier) -> String {
    format!("CE2 démo ({tier})")
}

/// Everyone of the demo school, class by class (tiers in order), the teacher first.
pub fn people() -> Vec<DemoUser> {
    let mut users = Vec::new();
    for tier in Tier::ALL {
        let people = std::iter::once((format!("teacher-{tier}"), TEACHER, Role::Teacher)).chain(
            PARENTS
                .iter()
                .enumerate()
                .map(|(idx, name)| (format!("parent-{tier}-{}", idx + 1), *name, Role::Parent)),
        );
        for (user_raw, display_name, role) in people {
            let user_id = UserId::new(user_raw).expect("demo user ids are valid");
            users.push(DemoUser {
                class_id: class_id(tier),
                tier,
                user_id,
                display_name: display_name.to_owned(),
                role,
            });
        }
    }
    users
}

/// A fresh token for a demo user, when the server signs its own (HS256 secret).
pub fn token(state: &AppState, user: &DemoUser) -> Option<String> {
    state
        .config
        .auth
        .jwt_secret
        .as_deref()
        .map(|secret| mint_hs256(secret, &user.user_id, DEMO_TOKEN_TTL_SECS))
}

/// Creates (or refreshes) the demo school. Idempotent.
pub async fn seed(state: &AppState) -> anyhow::Result<Vec<DemoUser>> {
    for tier in Tier::ALL {
        let class = ClassUpsert {
            name: class_name(tier),
            tier,
            // Calls stay end-to-end encrypted, as in a new class: the demo shows what schools get.
            options: ClassOptions { confort_famille: tier >= Tier::Standard, visio_allow_unencrypted: false }
                .into(),
        };
        state.directory.upsert_class(&class_id(tier), &class).await?;
    }
    let users = people();
    for user in &users {
        let member =
            MemberUpsert { display_name: user.display_name.clone(), role: user.role, approved: true };
        state.directory.upsert_member(&user.class_id, &user.user_id, &member).await?;
    }
    Ok(users)
}

/// What to print so that a person can try the demo: the home page, which links every member's call
/// and media pages, and the class backend's key. Tokens stay off the terminal.
pub fn instructions(state: &AppState, users: &[DemoUser]) -> String {
    let base = state.config.public_url();
    let mut out = String::new();
    out.push_str(&format!("\nDemo school ready: open {base}/ in a browser\n"));
    out.push_str(&format!(
        "  {} classes, {} members; each member has a call link and a media link there.\n",
        Tier::ALL.len(),
        users.len()
    ));
    out.push_str(&format!("  API docs:  {base}/openapi.json\n  Metrics:   {base}/metrics\n"));
    if let Some(key) = &state.config.auth.api_key {
        out.push_str(&format!("  Class backend API key (KLASS_API_KEY): {key}\n"));
    }
    out.push_str("\nOpen a teacher's call link first: a teacher starts the call, parents wait for it.\n");
    out
}
