//! `[remotes.NAME]` (a shared cache on object storage) and `[pipeline] remote`, the default.
//!
//! ```toml
//! [remotes.team]
//! url = "s3://bucket/prefix"          # or gs://…, az://…, file:///mnt/shared/pipe-cache
//! endpoint = "http://127.0.0.1:8333"  # optional, for S3-compatible servers
//! [pipeline]
//! remote = "team"
//! ```
//! Credentials never belong here: they come from the standard environment and profiles.

use pipe_remote::RemoteConfig;

use super::{Validator, did_you_mean, valid_name};

const REMOTE_KEYS: &[&str] = &["url", "endpoint"];
/// Keys people write when they mean credentials: refused with where credentials go instead.
const CREDENTIAL_HINTS: &[&str] = &["key", "secret", "token", "password", "credential", "sas"];

impl Validator<'_> {
    pub(super) fn remotes(&mut self, doc: &toml::Table) -> Vec<RemoteConfig> {
        let Some(value) = doc.get("remotes") else {
            return Vec::new();
        };
        let Some(table) = value.as_table() else {
            self.report(
                &["remotes"],
                "must be a table of `[remotes.<name>]` tables",
                None,
            );
            return Vec::new();
        };
        let mut remotes = Vec::new();
        for (name, value) in table {
            let at = ["remotes", name.as_str()];
            if !valid_name(name) {
                self.report(
                    &at,
                    "remote names start with a letter and use only letters, digits, `_` and `-`",
                    None,
                );
                continue;
            }
            let Some(t) = value.as_table() else {
                self.report(&at, "must be a table with `url` (and `endpoint`)", None);
                continue;
            };
            for key in t.keys() {
                if REMOTE_KEYS.contains(&key.as_str()) {
                    continue;
                }
                let lower = key.to_ascii_lowercase();
                let help = if CREDENTIAL_HINTS.iter().any(|h| lower.contains(h)) {
                    Some(
                        "credentials never go in pipeline.toml: pipe reads them from the \
                         environment and profiles (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or \
                         AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY…)"
                            .to_string(),
                    )
                } else {
                    did_you_mean(key, REMOTE_KEYS.iter().copied())
                        .or_else(|| Some("expected `url` and optionally `endpoint`".into()))
                };
                self.report(&["remotes", name, key], "unknown key", help);
            }
            let url = self.string(t, &["remotes", name, "url"]);
            let endpoint = self.string(t, &["remotes", name, "endpoint"]);
            match url {
                Some(url) => remotes.push(RemoteConfig {
                    name: name.clone(),
                    url,
                    endpoint,
                }),
                None if !t.contains_key("url") => self.report(
                    &at,
                    "needs `url`, e.g. \"s3://bucket/prefix\" or \"file:///mnt/shared/pipe-cache\"",
                    None,
                ),
                None => {}
            }
        }
        remotes
    }

    /// `[pipeline] remote`: the name of a declared remote.
    pub(super) fn default_remote(
        &mut self,
        pipeline: &toml::Table,
        remotes: &[RemoteConfig],
    ) -> Option<String> {
        let name = self.string(pipeline, &["pipeline", "remote"])?;
        if remotes.iter().any(|r| r.name == name) {
            return Some(name);
        }
        let known: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
        let help = did_you_mean(&name, known.iter().copied()).or_else(|| {
            Some(if known.is_empty() {
                format!("declare it: [remotes.{name}] with url = \"s3://bucket/prefix\"")
            } else {
                format!("declared remotes: {}", known.join(", "))
            })
        });
        self.report(
            &["pipeline", "remote"],
            format!("no remote `{name}` is declared"),
            help,
        );
        None
    }
}
