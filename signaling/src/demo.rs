//! The demo school of `serve --demo`: one class per tier, a teacher and a few parents each, and
//! tokens to try them with.

use models::api::{ClassUpsert, MemberUpsert};
use models::{ClassId, ClassOptions, Role, Tier, UserId};

use crate::auth::mint_hs256;
use crate::AppState;

/// Demo tokens live half a day: long enough to play, short enough not to linger.
const DEMO_TOKEN_TTL_SECS: u64 = 12 * 3600;

const PARENTS: [&str; 3] = ["Camille Durand", "Sami Benali", "Jeanne Morel"];

pub struct DemoUser {
    pub class_id: ClassId,
    pub tier: Tier,
    pub display_name: String,
    pub role: Role,
    pub token: Option<String>,
}

/// Creates (or refreshes) the demo school. Idempotent.
pub async fn seed(state: &AppState) -> anyhow::Result<Vec<DemoUser>> {
    let mut users = Vec::new();
    for tier in Tier::ALL {
        let class_id = ClassId::new(format!("demo-{tier}"))?;
        let class = ClassUpsert {
            name: format!("CE2 démo ({tier})"),
            tier,
            // Calls stay end-to-end encrypted, as in a new class: the demo shows what schools get.
            options: ClassOptions { confort_famille: tier >= Tier::Standard, visio_allow_unencrypted: false },
        };
        state.directory.upsert_class(&class_id, &class).await?;
        let people = std::iter::once((format!("teacher-{tier}"), "Mme Lefèvre".to_owned(), Role::Teacher))
            .chain(
                PARENTS.iter().enumerate().map(|(idx, name)| {
                    (format!("parent-{tier}-{}", idx + 1), (*name).to_owned(), Role::Parent)
                }),
            );
        for (user_raw, display_name, role) in people {
            let user_id = UserId::new(user_raw)?;
            let member = MemberUpsert { display_name: display_name.clone(), role, approved: true };
            state.directory.upsert_member(&class_id, &user_id, &member).await?;
            let token = state
                .config
                .auth
                .jwt_secret
                .as_deref()
                .map(|secret| mint_hs256(secret, &user_id, DEMO_TOKEN_TTL_SECS));
            users.push(DemoUser { class_id: class_id.clone(), tier, display_name, role, token });
        }
    }
    Ok(users)
}

/// What to print so that a person can try the demo.
pub fn instructions(state: &AppState, users: &[DemoUser]) -> String {
    let base = state.config.public_url();
    let mut out = String::new();
    out.push_str(&format!("\nDemo school ready on {base}\n"));
    out.push_str(&format!("  API docs:  {base}/openapi.json\n  Metrics:   {base}/metrics\n"));
    if let Some(key) = &state.config.auth.api_key {
        out.push_str(&format!("  Class backend API key (KLASS_API_KEY): {key}\n"));
    }
    out.push_str("\nUser tokens (valid 12 h); try:\n");
    for user in users {
        let Some(token) = &user.token else { continue };
        out.push_str(&format!(
            "\n  {} — {} ({}) in {}:\n    curl -H 'Authorization: Bearer {token}' {base}/v1/classes/{}/capabilities\n",
            user.tier, user.display_name, user.role, user.class_id, user.class_id
        ));
        if state.directory.tiers().policy(user.tier).has_visio() {
            // The token travels in the fragment, which the browser never sends to the server.
            out.push_str(&format!("    call: {base}/call/{}#token={token}\n", user.class_id));
        }
    }
    out.push_str("\nOpen a teacher's call link first: a teacher starts the call, parents wait for it.\n");
    out
}
