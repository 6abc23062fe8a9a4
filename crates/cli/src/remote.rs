//! The commands' client of a running sidecar: its address and `admin` key, and the few
//! calls they make (JSON in, JSON or a stream out), every error answer turned into the
//! sidecar's own message.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A running sidecar to work through, instead of opening the store.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The sidecar's address (`http://127.0.0.1:8080`); without it the command opens the
    /// configured store, which must then be stopped.
    #[arg(long)]
    pub url: Option<String>,
    /// An `admin` API key for the sidecar (default: the STEERFEED_API_KEY variable).
    #[arg(long, env = "STEERFEED_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

impl Remote {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    fn url(&self, path: &str) -> anyhow::Result<String> {
        let base = self.url.as_deref().context("no --url")?;
        Ok(format!("{}{path}", base.trim_end_matches('/')))
    }

    fn auth(&self) -> Option<String> {
        self.key.as_ref().map(|k| format!("Bearer {k}"))
    }

    /// POSTs `body` as JSON and reads a JSON answer.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let mut req = Self::agent().post(&url);
        if let Some(a) = self.auth() {
            req = req.header("authorization", a);
        }
        let resp = req
            .send_json(body)
            .with_context(|| format!("calling {url}"))?;
        read_answer(&url, resp)
    }

    /// PUTs `body` as JSON and reads a JSON answer.
    pub fn put_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let mut req = Self::agent().put(&url);
        if let Some(a) = self.auth() {
            req = req.header("authorization", a);
        }
        let resp = req
            .send_json(body)
            .with_context(|| format!("calling {url}"))?;
        read_answer(&url, resp)
    }

    /// GETs `path` and reads a JSON answer.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let mut req = Self::agent().get(&url);
        if let Some(a) = self.auth() {
            req = req.header("authorization", a);
        }
        let resp = req.call().with_context(|| format!("calling {url}"))?;
        read_answer(&url, resp)
    }

    /// GETs `path` and hands back its body to read as it arrives.
    pub fn get_reader(&self, path: &str) -> anyhow::Result<impl Read + use<>> {
        let url = self.url(path)?;
        let mut req = Self::agent().get(&url);
        if let Some(a) = self.auth() {
            req = req.header("authorization", a);
        }
        let resp = req.call().with_context(|| format!("calling {url}"))?;
        if !resp.status().is_success() {
            return Err(error_answer(&url, resp));
        }
        Ok(resp.into_body().into_reader())
    }
}

fn read_answer<T: DeserializeOwned>(
    url: &str,
    resp: ureq::http::Response<ureq::Body>,
) -> anyhow::Result<T> {
    if !resp.status().is_success() {
        return Err(error_answer(url, resp));
    }
    let mut body = resp.into_body();
    body.with_config()
        .limit(256 << 20)
        .read_json()
        .with_context(|| format!("reading the answer of {url}"))
}

/// The sidecar's error answer as an error: its status, code and message.
fn error_answer(url: &str, resp: ureq::http::Response<ureq::Body>) -> anyhow::Error {
    let status = resp.status();
    let text = resp
        .into_body()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    let message = serde_json::from_str::<steerfeed_server::error::ErrorBody>(&text)
        .map(|b| format!("{}: {}", b.error.code, b.error.message))
        .unwrap_or(text);
    anyhow::anyhow!("{url} answered {status}: {message}")
}
