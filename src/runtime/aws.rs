//! Shared AWS SDK configuration. Every client is built from the standard chain (environment,
//! profile, IAM role), so the same binary runs on Lambda, on a laptop and against emulators
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`). What this adds is
//! bounds: the SDK's defaults retry for tens of seconds, while a device waiting on an update
//! check should get an answer (even `service_unavailable`) within a few seconds.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

/// How long an AWS call may take before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Opening a TCP/TLS connection.
    pub connect: Duration,
    /// One attempt, from sending the request to the last byte of the answer.
    pub attempt: Duration,
    /// All attempts and the backoff between them.
    pub operation: Duration,
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
}

impl AwsTimeouts {
    /// Update checks: an unreachable, throttled or hanging table fails in ~4 s, so the device
    /// gets a refusal it retries later instead of an API Gateway timeout (29 s).
    pub const SERVING: Self = AwsTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(1500),
        operation: Duration::from_secs(4),
        max_attempts: 2,
        max_backoff: Duration::from_millis(500),
    };

    /// Stats batches: a transaction of counters is heavier than a read, and no device waits on
    /// it (the plugin sends stats in the background and resends on failure), but it must still
    /// end inside the function's timeout. Retrying is safe: the batch id is the request token.
    pub const STATS: Self = AwsTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_secs(3),
        operation: Duration::from_secs(6),
        max_attempts: 2,
        max_backoff: Duration::from_millis(500),
    };

    /// Operator commands: an 8 MiB upload part on a slow uplink needs room, and a person is
    /// watching a progress bar rather than a device waiting.
    pub const OPERATOR: Self = AwsTimeouts {
        connect: Duration::from_secs(3),
        attempt: Duration::from_secs(120),
        operation: Duration::from_secs(300),
        max_attempts: 3,
        max_backoff: Duration::from_secs(5),
    };

    fn timeout_config(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }

    fn retry_config(self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(self.max_backoff)
    }
}

/// The standard config chain with `timeouts` applied; add overrides (an endpoint, test
/// credentials) before `.load()`.
pub fn loader(timeouts: AwsTimeouts) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts.timeout_config())
        .retry_config(timeouts.retry_config())
}

/// The SDK config from the environment, with bounded timeouts and retries.
pub async fn sdk_config(timeouts: AwsTimeouts) -> SdkConfig {
    loader(timeouts).load().await
}

/// A DynamoDB client (honours `AWS_ENDPOINT_URL_DYNAMODB`).
pub fn dynamo_client(conf: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(conf)
}

/// A DynamoDB client with other bounds than `conf`'s (endpoint, region and credentials are
/// the same).
pub fn dynamo_client_with(conf: &SdkConfig, timeouts: AwsTimeouts) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(conf)
        .timeout_config(timeouts.timeout_config())
        .retry_config(timeouts.retry_config())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// True when S3 calls go to a custom endpoint (an emulator or an S3-compatible store) rather
/// than AWS: explicitly, via `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3` or a profile setting.
pub fn has_custom_s3_endpoint(conf: &SdkConfig) -> bool {
    if conf.endpoint_url().is_some() {
        return true;
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    match (conf.service_config(), key) {
        (Some(service), Ok(key)) => service.load_config(key).is_some(),
        _ => false,
    }
}

/// An S3 client. With a custom endpoint it uses path-style addressing
/// (`http://host:port/bucket/key`), because emulators and most S3-compatible stores have no
/// wildcard DNS for `bucket.host`.
pub fn s3_client(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(conf);
    if has_custom_s3_endpoint(conf) {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A setting read from the environment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Longest lifetime SigV4 allows for a presigned URL.
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// `UPDRAFT_URL_TTL` when unset.
pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(3600);

/// Parses a URL lifetime in whole seconds, 1 s to 7 days.
pub fn parse_url_ttl(text: &str) -> Result<Duration, ConfigError> {
    let secs: u64 = text.trim().parse().map_err(|_| ConfigError::Invalid {
        name: "UPDRAFT_URL_TTL",
        why: format!("{text:?} is not a number of seconds"),
    })?;
    let ttl = Duration::from_secs(secs);
    if secs == 0 || ttl > MAX_URL_TTL {
        return Err(ConfigError::Invalid {
            name: "UPDRAFT_URL_TTL",
            why: format!("{secs} is outside 1..={} seconds", MAX_URL_TTL.as_secs()),
        });
    }
    Ok(ttl)
}

/// `UPDRAFT_URL_TTL`, or the default of one hour.
pub fn url_ttl_from_env() -> Result<Duration, ConfigError> {
    match std::env::var("UPDRAFT_URL_TTL") {
        Ok(v) if !v.trim().is_empty() => parse_url_ttl(&v),
        _ => Ok(DEFAULT_URL_TTL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ttl_bounds() {
        assert_eq!(parse_url_ttl("3600"), Ok(Duration::from_secs(3600)));
        assert!(parse_url_ttl("0").is_err());
        assert!(parse_url_ttl("604801").is_err());
        assert!(parse_url_ttl("1h").is_err());
        assert_eq!(parse_url_ttl(" 604800 "), Ok(MAX_URL_TTL));
    }

    #[test]
    fn serving_bounds_fit_in_a_few_seconds() {
        let t = AwsTimeouts::SERVING;
        assert!(t.operation <= Duration::from_secs(5));
        assert!(t.connect < t.attempt && t.attempt < t.operation);
        assert!(
            t.max_attempts >= 2,
            "one retry rides out a dropped connection"
        );
    }

    #[tokio::test]
    async fn explicit_endpoint_means_path_style() {
        let conf = loader(AwsTimeouts::SERVING)
            .endpoint_url("http://127.0.0.1:9")
            .region("us-east-1")
            .test_credentials()
            .load()
            .await;
        assert!(has_custom_s3_endpoint(&conf));
        let presigned = s3_client(&conf)
            .get_object()
            .bucket("b")
            .key("k.zip")
            .presigned(
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(
            presigned.uri().starts_with("http://127.0.0.1:9/b/k.zip?"),
            "emulators need path-style addressing: {}",
            presigned.uri()
        );
    }
}
