//! Which stores a process uses: the embedded ones in a data folder, or DynamoDB + S3. Built
//! once per process (SDK clients included), shared by every request: the HTTP API's
//! `AppState` and the operations' `OperatorStores` are assembled here, and only here, from
//! concrete stores.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::{AppState, Delta, NoCheckCounts};
use crate::bundles::BundleStore;
use crate::bundles::file_urls::FileUrls;
use crate::bundles::local::LocalBundles;
use crate::bundles::manifests::CachedManifests;
use crate::bundles::s3::S3Bundles;
use crate::clock;
use crate::domain::device::DEFAULT_DEVICE_TTL_SECS;
use crate::ops::OperatorStores;
use crate::runtime::aws::{AwsTimeouts, dynamo_client, dynamo_client_with, s3_client, sdk_config};
use crate::runtime::identity::{AwsCaller, LocalUser};
use crate::store::cache::CachedReleases;
use crate::store::dynamo::devices::DynamoDevices;
use crate::store::dynamo::releases::DynamoStore;
use crate::store::dynamo::stats::DynamoStats;
use crate::store::embedded::EmbeddedStore;
use crate::store::embedded::housekeeping::HOUSEKEEPING_EVERY;

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

/// The AWS tables the HTTP API serves from.
pub struct AwsTables<'a> {
    pub releases: &'a str,
    pub devices: &'a str,
    /// Seconds a device's item lives (`UPDRAFT_DEVICE_TTL`).
    pub device_ttl: u64,
}

impl Backend {
    /// The shared state of the HTTP API on this backend (the embedded store's housekeeping
    /// runs on a timer of the current tokio runtime).
    pub async fn app_state(&self, settings: ServeSettings) -> anyhow::Result<AppState> {
        match self {
            Backend::Embedded { data } => {
                let store = EmbeddedStore::open(data)?;
                store.spawn_housekeeping(HOUSEKEEPING_EVERY);
                let bundles = LocalBundles::open(data, settings.url_ttl)?;
                let mut state = embedded_state(store, bundles, settings.cache_ttl);
                state.public_url = settings.public_url;
                Ok(state)
            }
            Backend::Aws {
                table,
                devices_table,
                bucket,
            } => {
                require_bucket(bucket)?;
                let conf = sdk_config(AwsTimeouts::SERVING).await;
                let signer = S3Bundles::new(s3_client(&conf), bucket.clone(), settings.url_ttl);
                let delta = aws_delta(&signer, &settings)?;
                let tables = AwsTables {
                    releases: table,
                    devices: devices_table,
                    device_ttl: device_ttl()?,
                };
                let stats_client = dynamo_client_with(&conf, AwsTimeouts::STATS);
                let client = dynamo_client(&conf);
                let mut state =
                    aws_state(&client, &stats_client, signer, tables, settings.cache_ttl);
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
                    evidence: store,
                    bundles: Some(Arc::new(bundles)),
                    identity: Arc::new(LocalUser),
                    clock: clock::system(),
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
                let stats = Arc::new(DynamoStats::new(
                    client.clone(),
                    table.clone(),
                    devices_table.clone(),
                    ttl,
                ));
                Ok(OperatorStores {
                    releases: store.clone(),
                    items: store.clone(),
                    query: store.clone(),
                    history: store,
                    devices: Arc::new(DynamoDevices::new(
                        client,
                        table.clone(),
                        devices_table.clone(),
                        ttl,
                    )),
                    stats: stats.clone(),
                    evidence: stats,
                    bundles,
                    identity: Arc::new(AwsCaller(aws_sdk_sts::Client::new(&conf))),
                    clock: clock::system(),
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

/// The HTTP API's state on the embedded store in `data` (benchmarks, tests: no housekeeping
/// timer).
pub fn open_embedded_state(
    data: &std::path::Path,
    cache_ttl: Duration,
    url_ttl: Duration,
) -> anyhow::Result<AppState> {
    let store = EmbeddedStore::open(data)?;
    let bundles = LocalBundles::open(data, url_ttl)?;
    Ok(embedded_state(store, bundles, cache_ttl))
}

/// The HTTP API's state on the embedded store and a local bundle folder: delta answers on,
/// metrics off, the origin taken from each request.
pub fn embedded_state(
    store: EmbeddedStore,
    bundles: LocalBundles,
    cache_ttl: Duration,
) -> AppState {
    let store = Arc::new(store);
    let delta = Delta {
        manifests: CachedManifests::new(Arc::new(bundles.clone()), cache_ttl),
        urls: FileUrls::new(&bundles.secret(), bundles.ttl()),
    };
    AppState {
        releases: CachedReleases::new(store.clone(), cache_ttl),
        devices: store.clone(),
        stats: store.clone(),
        evidence: store.clone(),
        items: store.clone(),
        history: store,
        signer: Arc::new(bundles.clone()),
        local_bundles: Some(bundles),
        public_url: None,
        delta: Some(delta),
        metrics: Arc::new(NoCheckCounts),
        clock: clock::system(),
    }
}

/// The HTTP API's state on DynamoDB and S3 from clients already built (the Lambda's, `serve
/// --backend aws`, tests' counting clients). Stats writes get their own client, for their
/// timeouts. Delta answers, the public URL and metrics start off; callers set them.
pub fn aws_state(
    dynamo: &aws_sdk_dynamodb::Client,
    stats_dynamo: &aws_sdk_dynamodb::Client,
    signer: S3Bundles,
    tables: AwsTables<'_>,
    cache_ttl: Duration,
) -> AppState {
    let store = Arc::new(DynamoStore::new(dynamo.clone(), tables.releases));
    let stats = Arc::new(DynamoStats::new(
        stats_dynamo.clone(),
        tables.releases,
        tables.devices,
        tables.device_ttl,
    ));
    AppState {
        releases: CachedReleases::new(store.clone(), cache_ttl),
        devices: Arc::new(DynamoDevices::new(
            dynamo.clone(),
            tables.releases,
            tables.devices,
            tables.device_ttl,
        )),
        stats: stats.clone(),
        evidence: stats,
        items: store.clone(),
        history: store,
        signer: Arc::new(signer),
        local_bundles: None,
        public_url: None,
        delta: None,
        metrics: Arc::new(NoCheckCounts),
        clock: clock::system(),
    }
}

/// Delta answers on AWS: manifests read through the signer's bucket, `/f/` URLs signed with
/// `UPDRAFT_URL_SECRET` (without it, answers carry no manifest).
fn aws_delta(signer: &S3Bundles, settings: &ServeSettings) -> anyhow::Result<Option<Delta>> {
    match std::env::var("UPDRAFT_URL_SECRET") {
        Ok(secret) if secret.len() >= 32 => Ok(Some(Delta {
            manifests: CachedManifests::new(Arc::new(signer.clone()), settings.cache_ttl),
            urls: FileUrls::new(secret.as_bytes(), settings.url_ttl),
        })),
        Ok(_) => anyhow::bail!(
            "UPDRAFT_URL_SECRET must be at least 32 characters (template.yaml generates one)"
        ),
        Err(_) => {
            tracing::warn!(
                "UPDRAFT_URL_SECRET is not set: update answers carry no manifest (delta updates off)"
            );
            Ok(None)
        }
    }
}

fn require_bucket(bucket: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !bucket.is_empty(),
        "--backend aws needs --bucket (or UPDRAFT_BUCKET)"
    );
    Ok(())
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
