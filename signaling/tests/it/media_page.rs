//! The media page and its modules are served from the binary with the call page's headers: a
//! Content-Security-Policy that allows this origin alone, no referrer.

use reqwest::Method;

use crate::support::{Db, TestServer};

#[tokio::test]
async fn the_media_page_is_served_with_a_strict_policy() {
    let server = TestServer::start(Db::Sqlite).await;
    let page = server.request(Method::GET, "/media/any-class").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("/web/media.js") && html.contains("/web/media.css"), "{html}");
    for (file, content_type) in [
        ("media.js", "text/javascript"),
        ("media-upload.js", "text/javascript"),
        ("media-review.js", "text/javascript"),
        ("media-strings.js", "text/javascript"),
        ("media.css", "text/css"),
    ] {
        let response = server.request(Method::GET, &format!("/web/{file}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{file}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(content_type), "{file}");
        assert!(response.headers().contains_key("content-security-policy"), "{file}");
    }
    // The modules import one another by these names only.
    let main = server.request(Method::GET, "/web/media.js").send().await.unwrap().text().await.unwrap();
    for import in ["./media-strings.js", "./media-upload.js", "./media-review.js"] {
        assert!(main.contains(import), "{import}");
    }
}
