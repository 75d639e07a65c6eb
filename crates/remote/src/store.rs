//! Opening a remote: its URL and endpoint to an `object_store` client with bounded waits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::error::RemoteError;

/// A remote as `[remotes.NAME]` declares it. Credentials are never part of it: they come from
/// the standard environment and profiles (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub name: String,
    /// `s3://bucket/prefix`, `gs://…`, `az://container/prefix`, `file:///abs/dir`.
    pub url: String,
    /// An S3-compatible (or Azure) server's address, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
}

/// How long a connection may take to open: an unreachable endpoint fails within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (a multipart part, a whole small file).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Retries of a failed request (server errors, dropped connections), with backoff, within this.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RETRIES: usize = 4;
/// The most transfers in flight at once, unless [`Remote::with_jobs`] says otherwise.
pub const DEFAULT_JOBS: usize = 32;

pub struct Remote {
    pub(crate) name: String,
    /// Where it is, for messages: URL and endpoint without user info or query.
    pub(crate) at: String,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) jobs: usize,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({} at {})", self.name, self.at)
    }
}

impl Remote {
    /// A client for `config`. Nothing is contacted yet: see [`Remote::check`].
    pub fn open(config: &RemoteConfig) -> Result<Self, RemoteError> {
        let name = config.name.clone();
        let bad = |why: String| RemoteError::Config {
            remote: name.clone(),
            why,
        };
        let url = Url::parse(&config.url).map_err(|e| {
            bad(format!(
                "`url = \"{}\"` is not a URL ({e}); write e.g. s3://bucket/prefix or \
                 file:///mnt/shared/pipe-cache",
                redact_text(&config.url)
            ))
        })?;
        let endpoint = match &config.endpoint {
            Some(e) => Some(Url::parse(e).map_err(|err| {
                bad(format!(
                    "`endpoint = \"{}\"` is not a URL ({err})",
                    redact_text(e)
                ))
            })?),
            None => None,
        };
        let at = match &endpoint {
            Some(e) => format!("{}, endpoint {}", shown(&url), shown(e)),
            None => shown(&url),
        };
        let plain_http = endpoint.as_ref().is_some_and(|e| e.scheme() == "http");
        let client = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_allow_http(plain_http);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        };
        let store_err = |source: object_store::Error| RemoteError::Store {
            remote: name.clone(),
            at: at.clone(),
            what: "cannot configure the client".into(),
            source: Box::new(source),
        };
        let key_prefix =
            || Path::parse(url.path().trim_matches('/')).map_err(|e| bad(e.to_string()));
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match url.scheme() {
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env()
                    .with_url(config.url.clone())
                    .with_client_options(client)
                    .with_retry(retry);
                if let Some(e) = &config.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                (Arc::new(b.build().map_err(store_err)?), key_prefix()?)
            }
            "gs" => {
                if endpoint.is_some() {
                    return Err(bad("`endpoint` is for s3:// and az:// remotes".into()));
                }
                let b = GoogleCloudStorageBuilder::from_env()
                    .with_url(config.url.clone())
                    .with_client_options(client)
                    .with_retry(retry);
                (Arc::new(b.build().map_err(store_err)?), key_prefix()?)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let mut b = MicrosoftAzureBuilder::from_env()
                    .with_url(config.url.clone())
                    .with_client_options(client)
                    .with_retry(retry);
                if let Some(e) = &config.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                (Arc::new(b.build().map_err(store_err)?), key_prefix()?)
            }
            "file" => {
                let dir = url
                    .to_file_path()
                    .ok()
                    .filter(|p| p.is_absolute())
                    .ok_or_else(|| bad(format!("`{}` is not an absolute file:/// URL", url)))?;
                std::fs::create_dir_all(&dir).map_err(crate::error::io_at(&dir))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(store_err)?;
                (Arc::new(fs), Path::default())
            }
            "memory" => (Arc::new(InMemory::new()), Path::default()),
            other => {
                return Err(bad(format!(
                    "`{other}://` is not a remote pipe knows: use s3://, gs://, az:// or file://"
                )));
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pipe-remote")
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        Ok(Self {
            name,
            at,
            store,
            prefix,
            runtime,
            jobs: DEFAULT_JOBS,
        })
    }

    /// At most `jobs` transfers at once (at least one).
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the remote is, as messages show it (no credentials).
    pub fn at(&self) -> &str {
        &self.at
    }

    /// Whether the remote answers: one listing of the records, within the connect timeout and
    /// retries. An unreachable endpoint fails here, naming it.
    pub fn check(&self) -> Result<(), RemoteError> {
        let ac = self.prefix.clone().join("ac");
        self.wait("reaching it", CHECK_TIMEOUT, async {
            self.store.list_with_delimiter(Some(&ac)).await.map(|_| ())
        })
    }

    pub(crate) fn path(&self, dir: &str, name: &str) -> Path {
        self.prefix.clone().join(dir).join(name)
    }

    pub(crate) fn store_err(
        &self,
        what: String,
    ) -> impl FnOnce(object_store::Error) -> RemoteError {
        let (remote, at) = (self.name.clone(), self.at.clone());
        move |source| RemoteError::Store {
            remote,
            at,
            what,
            source: Box::new(source),
        }
    }

    /// Run `f` on the runtime, failing after `limit`.
    pub(crate) fn wait<T>(
        &self,
        what: &str,
        limit: Duration,
        f: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, RemoteError> {
        match self
            .runtime
            .block_on(async { tokio::time::timeout(limit, f).await })
        {
            Ok(r) => r.map_err(self.store_err(what.to_string())),
            Err(_) => Err(RemoteError::Timeout {
                remote: self.name.clone(),
                at: self.at.clone(),
                what: what.to_string(),
                secs: limit.as_secs(),
            }),
        }
    }
}

/// The longest [`Remote::check`] waits: the connect timeout and a few retries.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// A URL as messages show it: no user info, no query (SAS tokens), no fragment.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string().trim_end_matches('/').to_string()
}

/// A string that did not parse as a URL, shown without what could be user info or a query.
fn redact_text(s: &str) -> String {
    let s = s.split(['?', '#']).next().unwrap_or("");
    match (s.find("://"), s.rfind('@')) {
        (Some(i), Some(j)) if j > i => format!("{}://…@{}", &s[..i], &s[j + 1..]),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, endpoint: Option<&str>) -> RemoteConfig {
        RemoteConfig {
            name: "team".into(),
            url: url.into(),
            endpoint: endpoint.map(str::to_string),
        }
    }

    #[test]
    fn where_a_remote_is_never_shows_its_credentials() {
        let r = Remote::open(&config(
            "s3://bucket/p",
            Some("http://user:hunter2@127.0.0.1:8333/?X-Sig=secret"),
        ))
        .expect("opens");
        assert_eq!(r.at(), "s3://bucket/p, endpoint http://127.0.0.1:8333");
        assert_eq!(
            redact_text("s3//user:hunter2@host/x?sig=1"),
            "s3//user:hunter2@host/x"
        );
        assert_eq!(redact_text("h://user:hunter2@host/x?sig=1"), "h://…@host/x");
    }

    #[test]
    fn unknown_schemes_and_relative_files_are_config_errors() {
        let err = Remote::open(&config("ftp://x/y", None)).expect_err("ftp");
        assert!(
            err.to_string().contains("`ftp://` is not a remote"),
            "{err}"
        );
        let err = Remote::open(&config("not a url", None)).expect_err("text");
        assert!(err.to_string().contains("is not a URL"), "{err}");
        let err = Remote::open(&config("gs://b/p", Some("http://x"))).expect_err("gs");
        assert!(err.to_string().contains("`endpoint` is for"), "{err}");
    }
}
