//! The home page `/`. In demo mode it is the demo school: its classes by tier and, for each member,
//! a link to join the call and one to the class's media, each carrying a fresh token in its
//! fragment (which browsers never send to a server). Otherwise a short page saying what this server
//! is, with links to the API description and health.
//!
//! Server-rendered, with every text escaped; French unless the browser prefers English.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use models::{Role, Tier, TierPolicy};

use crate::web::SECURITY_HEADERS;
use crate::{demo, AppState};

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    let body = if state.config.demo { demo_school(&state, lang) } else { about(lang) };
    (SECURITY_HEADERS, Html(page(lang, &body))).into_response()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// English when the browser ranks an English tag above any French one; French otherwise.
    pub fn from_accept_language(raw: Option<&str>) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in raw.unwrap_or("").split(',') {
            let mut fields = part.trim().split(';');
            let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = fields
                .find_map(|f| f.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("fr") => Lang::Fr,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map_or(Lang::Fr, |(_, lang)| lang)
    }

    fn pick(self, fr: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }
}

fn page(lang: Lang, body: &str) -> String {
    let (code, title) = match lang {
        Lang::Fr => ("fr", "Klass : visio et médias de la classe"),
        Lang::En => ("en", "Klass: class calls and media"),
    };
    format!(
        "<!doctype html>\n<html lang=\"{code}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{title}</title>\n\
         <link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"/web/home.css\">\n</head>\n\
         <body>\n<header><h1>{title}</h1></header>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )
}

fn about(lang: Lang) -> String {
    let intro = lang.pick(
        "Ce serveur fait les visios et traite les photos et vidéos des classes d'une application de \
         classe. On y entre par les liens que donne l'application, jamais directement.",
        "This server runs the video calls and processes the photos and videos of a class app's \
         classes. People reach it through the links the app gives them, never directly.",
    );
    let links = lang.pick("Pour les développeurs", "For developers");
    let api = lang.pick("Description de l'API (OpenAPI)", "API description (OpenAPI)");
    let health = lang.pick("État du serveur", "Server health");
    format!(
        "<p>{intro}</p>\n<h2>{links}</h2>\n<ul>\n<li><a href=\"/openapi.json\">{api}</a></li>\n\
         <li><a href=\"/healthz\">{health}</a> · <a href=\"/readyz\">/readyz</a></li>\n</ul>\n"
    )
}

fn demo_school(state: &AppState, lang: Lang) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "<p class=\"notice\">{}</p>\n",
        lang.pick(
            "Mode démo : chaque lien ci-dessous ouvre la page en tant que ce membre, sans mot de passe. \
             Ouvrez d'abord le lien d'un enseignant : il démarre la visio, les parents l'attendent.",
            "Demo mode: each link below opens the page as that member, with no password. Open a \
             teacher's link first: a teacher starts the call, parents wait for it.",
        )
    ));
    let people = demo::people();
    for tier in Tier::ALL {
        let policy = state.directory.tiers().policy(tier);
        let class_id = demo::class_id(tier);
        out.push_str(&format!(
            "<section class=\"class\" aria-labelledby=\"class-{tier}\">\n<h2 id=\"class-{tier}\">{}</h2>\n\
             <p class=\"tier\">{}</p>\n<ul class=\"members\">\n",
            escape(&demo::class_name(tier)),
            escape(&tier_summary(policy, tier, lang)),
        ));
        for user in people.iter().filter(|user| user.tier == tier) {
            let Some(token) = demo::token(state, user) else { continue };
            let name = escape(&user.display_name);
            let role = role_name(user.role, lang);
            let user_id = escape(user.user_id.as_str());
            out.push_str(&format!(
                "<li><span class=\"who\">{name} <span class=\"role\">({role})</span></span>"
            ));
            if policy.has_visio() {
                out.push_str(&format!(
                    " <a data-kind=\"call\" data-user=\"{user_id}\" href=\"/call/{class_id}#token={token}\">{} {name}</a>",
                    lang.pick("Rejoindre la visio en tant que", "Join the call as"),
                ));
            }
            out.push_str(&format!(
                " <a data-kind=\"media\" data-user=\"{user_id}\" href=\"/media/{class_id}#token={token}\">{} {name}</a></li>\n",
                lang.pick("Photos et vidéos en tant que", "Photos and videos as"),
            ));
        }
        out.push_str("</ul>\n</section>\n");
    }
    out.push_str(&format!(
        "<p class=\"dev\"><a href=\"/openapi.json\">{}</a> · <a href=\"/metrics\">/metrics</a></p>\n",
        lang.pick("Description de l'API (OpenAPI)", "API description (OpenAPI)")
    ));
    out
}

fn tier_summary(policy: &TierPolicy, tier: Tier, lang: Lang) -> String {
    let visio = match (&policy.visio, lang) {
        (None, Lang::Fr) => "pas de visio".to_owned(),
        (None, Lang::En) => "no calls".to_owned(),
        (Some(visio), _) => {
            let minutes = visio.max_duration.map(|d| d.as_secs() / 60);
            match (lang, minutes) {
                (Lang::Fr, Some(m)) => format!("visio : {} personnes, {m} min", visio.max_participants),
                (Lang::Fr, None) => {
                    format!("visio : {} personnes, sans limite de durée", visio.max_participants)
                }
                (Lang::En, Some(m)) => format!("calls: {} people, {m} min", visio.max_participants),
                (Lang::En, None) => format!("calls: {} people, no time limit", visio.max_participants),
            }
        }
    };
    let (photos, videos) = (policy.max_photos_per_post, policy.max_videos_per_post);
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    let media = match lang {
        Lang::Fr => {
            format!("{photos} photo{} et {videos} vidéo{} par publication", plural(photos), plural(videos))
        }
        Lang::En => format!("{photos} photo{} and {videos} video{} per post", plural(photos), plural(videos)),
    };
    let name = match lang {
        Lang::Fr => "Offre",
        Lang::En => "Tier",
    };
    let tier = tier.as_str();
    let tier = format!("{}{}", tier[..1].to_ascii_uppercase(), &tier[1..]);
    format!("{name} {tier} · {visio} · {media}")
}

fn role_name(role: Role, lang: Lang) -> &'static str {
    match role {
        Role::Teacher => lang.pick("enseignant·e", "teacher"),
        Role::Admin => lang.pick("administrateur·rice", "admin"),
        Role::Parent => lang.pick("parent", "parent"),
    }
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_only_when_ranked_above_french() {
        assert_eq!(Lang::from_accept_language(None), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("en-GB,en;q=0.9")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("fr-FR,fr;q=0.9,en;q=0.8")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("de,en;q=0.5")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("en;q=0.4,fr;q=0.7")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some(";;,q=abc")), Lang::Fr);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">O'Neil & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
}
