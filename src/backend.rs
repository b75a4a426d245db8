//! Which stores a process uses: the embedded ones in a data folder, or DynamoDB + S3. Built
//! once per process (SDK clients included), shared by every request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::AppState;
use crate::aws::{AwsTimeouts, dynamo_client, dynamo_client_with, s3_client, sdk_config};
use crate::bundles::BundleStore;
use crate::bundles::local::LocalBundles;
use crate::bundles::s3::S3Bundles;
use crate::domain::device::DEFAULT_DEVICE_TTL_SECS;
use crate::store::dynamo::DynamoStore;
use crate::store::dynamo_devices::DynamoDevices;
use crate::store::dynamo_stats::DynamoStats;
use crate::store::embedded::EmbeddedStore;
use crate::store::{
    DeviceStore, HistoryStore, ItemQuery, ItemWriter, ReleaseControl, ReleaseStore, StatsSink,
};

/// Where items and bundles live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite and a bundle folder under `data`.
    Embedded { data: PathBuf },
    /// DynamoDB tables and an S3 bucket, through the standard AWS configuration chain.
    Aws {
        table: String,
        devices_table: String,
        bucket: String,
    },
}

/// What the server needs besides the backend.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub cache_ttl: Duration,
    pub url_ttl: Duration,
    pub public_url: Option<String>,
}

impl Backend {
    /// The shared state of the HTTP API on this backend.
    pub async fn app_state(&self, settings: ServeSettings) -> anyhow::Result<AppState> {
        match self {
            Backend::Embedded { data } => AppState::embedded(
                data,
                settings.cache_ttl,
                settings.url_ttl,
                settings.public_url,
            ),
            Backend::Aws {
                table,
                devices_table,
                bucket,
            } => {
                require_bucket(bucket)?;
                let conf = sdk_config(AwsTimeouts::SERVING).await;
                let client = dynamo_client(&conf);
                let ttl = device_ttl()?;
                let signer = S3Bundles::new(s3_client(&conf), bucket.clone(), settings.url_ttl);
                let delta = match std::env::var("UPDRAFT_URL_SECRET") {
                    Ok(secret) if secret.len() >= 32 => Some(crate::api::Delta {
                        manifests: crate::bundles::manifests::CachedManifests::new(
                            Arc::new(signer.clone()),
                            settings.cache_ttl,
                        ),
                        urls: crate::bundles::file_urls::FileUrls::new(
                            secret.as_bytes(),
                            settings.url_ttl,
                        ),
                    }),
                    Ok(_) => anyhow::bail!(
                        "UPDRAFT_URL_SECRET must be at least 32 characters (template.yaml generates one)"
                    ),
                    Err(_) => {
                        tracing::warn!(
                            "UPDRAFT_URL_SECRET is not set: update answers carry no manifest (delta updates off)"
                        );
                        None
                    }
                };
                let mut state = AppState::on_aws(
                    &client,
                    &dynamo_client_with(&conf, AwsTimeouts::STATS),
                    signer,
                    crate::api::AwsTables {
                        releases: table,
                        devices: devices_table,
                        device_ttl: ttl,
                    },
                    settings.cache_ttl,
                );
                state.public_url = settings.public_url;
                state.delta = delta;
                Ok(state)
            }
        }
    }

    /// The stores operator commands use. With `create` false (every command but `release`),
    /// an embedded store that does not exist is an error, so no command creates a data
    /// folder by mistake. Bundle storage is opened when the backend names it (`quiet`: no
    /// upload progress bar, for `--json`).
    pub async fn operator_stores(
        &self,
        create: bool,
        quiet: bool,
    ) -> anyhow::Result<OperatorStores> {
        match self {
            Backend::Embedded { data } => {
                if !create && !EmbeddedStore::exists(data) {
                    anyhow::bail!(
                        "there is no Updraft store in {} (no updraft.db); pass --data or set UPDRAFT_DATA to the folder `updraft serve` uses",
                        data.display()
                    );
                }
                let store = Arc::new(EmbeddedStore::open(data)?);
                // The URL lifetime is the server's business; operators only store files.
                let bundles = LocalBundles::open(data, Duration::from_secs(3600))?;
                Ok(OperatorStores {
                    releases: store.clone(),
                    items: store.clone(),
                    query: store.clone(),
                    history: store.clone(),
                    devices: store.clone(),
                    stats: store.clone(),
                    control: store,
                    bundles: Some(Arc::new(bundles)),
                    identity: Identity::Local,
                })
            }
            Backend::Aws {
                table,
                devices_table,
                bucket,
            } => {
                let conf = sdk_config(AwsTimeouts::OPERATOR).await;
                let client = dynamo_client(&conf);
                let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
                let ttl = device_ttl()?;
                let bundles: Option<Arc<dyn BundleStore>> = (!bucket.is_empty()).then(|| {
                    Arc::new(
                        S3Bundles::new(s3_client(&conf), bucket.clone(), Duration::from_secs(3600))
                            .quiet(quiet),
                    ) as Arc<dyn BundleStore>
                });
                Ok(OperatorStores {
                    releases: store.clone(),
                    items: store.clone(),
                    query: store.clone(),
                    history: store.clone(),
                    devices: Arc::new(DynamoDevices::new(
                        client.clone(),
                        table.clone(),
                        devices_table.clone(),
                        ttl,
                    )),
                    stats: Arc::new(DynamoStats::new(
                        client,
                        table.clone(),
                        devices_table.clone(),
                        ttl,
                    )),
                    control: store,
                    bundles,
                    identity: Identity::Aws(aws_sdk_sts::Client::new(&conf)),
                })
            }
        }
    }

    /// The AWS backend from `UPDRAFT_TABLE`, `UPDRAFT_DEVICES_TABLE` and `UPDRAFT_BUCKET`.
    pub fn aws_from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .with_context(|| format!("{name} is not set"))
        };
        Ok(Backend::Aws {
            table: var("UPDRAFT_TABLE")?,
            devices_table: var("UPDRAFT_DEVICES_TABLE")?,
            bucket: var("UPDRAFT_BUCKET")?,
        })
    }
}

fn require_bucket(bucket: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !bucket.is_empty(),
        "--backend aws needs --bucket (or UPDRAFT_BUCKET)"
    );
    Ok(())
}

/// What operator commands read and write.
pub struct OperatorStores {
    pub releases: Arc<dyn ReleaseStore>,
    pub items: Arc<dyn ItemWriter>,
    pub query: Arc<dyn ItemQuery>,
    pub history: Arc<dyn HistoryStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub stats: Arc<dyn StatsSink>,
    pub control: Arc<dyn ReleaseControl>,
    /// `None` on AWS without `--bucket`: only commands that touch bundles need it.
    pub bundles: Option<Arc<dyn BundleStore>>,
    pub identity: Identity,
}

impl OperatorStores {
    /// The bundle storage, or the one-sentence reason it is missing.
    pub fn bundles(&self) -> anyhow::Result<&dyn BundleStore> {
        self.bundles
            .as_deref()
            .context("--backend aws needs --bucket (or UPDRAFT_BUCKET) for bundles")
    }
}

/// Who history names for an operator's change.
pub enum Identity {
    /// The OS user running the command.
    Local,
    /// The caller's AWS principal, from STS GetCallerIdentity.
    Aws(aws_sdk_sts::Client),
}

impl Identity {
    /// The OS user locally, the principal ARN on AWS.
    pub async fn who(&self) -> anyhow::Result<String> {
        match self {
            // `USER` first, so a shared service account can be named by whoever runs it.
            Identity::Local => Ok(std::env::var("USER")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .or_else(|| whoami::username().ok())
                .unwrap_or_else(|| "unknown".to_owned())),
            Identity::Aws(sts) => {
                let out = sts.get_caller_identity().send().await.map_err(|e| {
                    anyhow::anyhow!(
                        "STS GetCallerIdentity: {}",
                        aws_sdk_sts::error::DisplayErrorContext(e)
                    )
                })?;
                out.arn
                    .context("STS GetCallerIdentity answered without an ARN")
            }
        }
    }
}

/// `UPDRAFT_DEVICE_TTL`: seconds a device item lives after its last write.
fn device_ttl() -> anyhow::Result<u64> {
    Ok(seconds_from_env("UPDRAFT_DEVICE_TTL", DEFAULT_DEVICE_TTL_SECS)?.as_secs())
}

/// Parses a whole number of seconds from an environment variable, or the default.
pub fn seconds_from_env(name: &str, default: u64) -> anyhow::Result<Duration> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let secs: u64 = v
                .trim()
                .parse()
                .with_context(|| format!("{name}={v:?} is not a number of seconds"))?;
            Ok(Duration::from_secs(secs))
        }
        _ => Ok(Duration::from_secs(default)),
    }
}
