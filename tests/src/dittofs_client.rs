//! A deliberately thin DittoFS HTTP client for tests: it returns status, content type and raw body, so the
//! contract suite can assert wire details (text/plain vs problem+json) that a typed client would hide.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// One HTTP exchange's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("HTTP {} body is not JSON: {:?}", self.status, self.body))
    }

    /// Fails with the whole reply in the message when the status is not `want`.
    pub fn expect_status(self, want: u16) -> anyhow::Result<Reply> {
        anyhow::ensure!(
            self.status == want,
            "want HTTP {want}, got {} {} {:?}",
            self.status,
            self.content_type,
            self.body
        );
        Ok(self)
    }

    /// The `detail` of a problem+json reply, checking the content type and the status field.
    pub fn problem_detail(&self) -> anyhow::Result<String> {
        anyhow::ensure!(self.content_type == "application/problem+json", "not a problem: {self:?}");
        let body = self.json()?;
        anyhow::ensure!(body["type"] == "about:blank" && body["status"] == self.status, "bad problem shape: {body}");
        Ok(body["detail"].as_str().unwrap_or_default().to_string())
    }

    /// The body of a Go `http.Error` reply (text/plain), trimmed.
    pub fn plain_text(&self) -> anyhow::Result<&str> {
        anyhow::ensure!(self.content_type == "text/plain; charset=utf-8", "not text/plain: {self:?}");
        Ok(self.body.trim_end())
    }
}

/// A client bound to one server, optionally holding an access token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// HTTPS to a DittoFS serving TLS ([`crate::tls`]); reqwest still builds the requests.
    https: Option<crate::tls::Https>,
    base: String,
    pub token: Option<String>,
    /// The last login or refresh answer.
    pub session: Option<Value>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Api { http, https: None, base: base.trim_end_matches('/').to_string(), token: None, session: None }
    }

    /// A client of an `https://` `base`, trusting and presenting what `trust` says.
    pub fn with_tls(base: &str, trust: &crate::tls::ClientTls) -> anyhow::Result<Api> {
        Ok(Api { https: Some(crate::tls::https_client(trust)?), ..Api::new(base) })
    }

    /// Logs in and keeps the access token; errors on anything but 200.
    pub async fn login(&mut self, username: &str, password: &str) -> anyhow::Result<Value> {
        let reply =
            self.post("/api/v1/auth/login", &serde_json::json!({"username": username, "password": password})).await?;
        self.adopt_session(reply.expect_status(200)?.json()?)
    }

    /// Exchanges the session's refresh token for a new pair.
    pub async fn refresh(&mut self) -> anyhow::Result<Value> {
        let refresh_token = self.session.as_ref().and_then(|s| s["refresh_token"].as_str()).context("no session")?;
        let body = serde_json::json!({ "refresh_token": refresh_token });
        let reply = self.post("/api/v1/auth/refresh", &body).await?;
        self.adopt_session(reply.expect_status(200)?.json()?)
    }

    fn adopt_session(&mut self, session: Value) -> anyhow::Result<Value> {
        self.token = Some(session["access_token"].as_str().context("no access_token")?.to_string());
        self.session = Some(session.clone());
        Ok(session)
    }

    /// The same server with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api { token: token.map(str::to_string), session: None, ..self.clone() }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    /// A bodiless request with any method (for 405 cases).
    pub async fn request(&self, method: &str, path: &str) -> anyhow::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).context("HTTP method")?;
        self.send(self.http.request(method, self.url(path))).await
    }

    /// Sends raw bytes (for malformed-JSON cases).
    pub async fn post_raw(&self, path: &str, body: &'static str) -> anyhow::Result<Reply> {
        self.send(self.http.post(self.url(path)).header("content-type", "application/json").body(body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(https) = &self.https {
            let request: http::Request<reqwest::Body> = request.build()?.try_into()?;
            let response = tokio::time::timeout(Duration::from_secs(40), https.request(request))
                .await
                .context("no answer within 40 s")??;
            let status = response.status().as_u16();
            let content_type = content_type(response.headers());
            let bytes = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            return Ok(Reply { status, content_type, body });
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = content_type(response.headers());
        let body = response.text().await?;
        Ok(Reply { status, content_type, body })
    }
}

/// The Content-Type of an answer ("" without one), from either HTTP client's headers.
fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}
