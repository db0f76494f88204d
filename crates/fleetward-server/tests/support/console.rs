//! A browser's view of the console: sessions signed in with a token, pages
//! fetched and forms posted with the session cookie, no redirects followed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use super::TestServer;

/// A browser: no redirects followed, so each answer can be checked.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

pub async fn get(server: &TestServer, cookie: Option<&str>, path: &str) -> Page {
    send(browser().get(format!("{}{path}", server.base)), cookie).await
}

pub async fn post_form(
    server: &TestServer,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> Page {
    let request = browser().post(format!("{}{path}", server.base)).form(form);
    send(request, cookie).await
}

async fn send(mut request: reqwest::RequestBuilder, cookie: Option<&str>) -> Page {
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Signs in with `token` and returns the session cookie (`name=value`).
pub async fn sign_in(server: &TestServer, token: &str) -> String {
    let answer = post_form(server, None, "/console/login", &[("token", token)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

pub fn csrf_of(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = body.find(marker).expect("a form with a CSRF token") + marker.len();
    body[start..start + 64].to_owned()
}
