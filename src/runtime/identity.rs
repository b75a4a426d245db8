//! Who history names for an operator's change: the OS user locally, the caller's principal on
//! AWS.

use anyhow::Context;
use async_trait::async_trait;

use crate::ops::Identity;

/// The OS user running the command.
pub struct LocalUser;

#[async_trait]
impl Identity for LocalUser {
    async fn who(&self) -> anyhow::Result<String> {
        // `USER` first, so a shared service account can be named by whoever runs it.
        Ok(std::env::var("USER")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| whoami::username().ok())
            .unwrap_or_else(|| "unknown".to_owned()))
    }
}

/// The caller's AWS principal, from STS GetCallerIdentity (which needs no permission).
pub struct AwsCaller(pub aws_sdk_sts::Client);

#[async_trait]
impl Identity for AwsCaller {
    async fn who(&self) -> anyhow::Result<String> {
        let out = self.0.get_caller_identity().send().await.map_err(|e| {
            anyhow::anyhow!(
                "STS GetCallerIdentity: {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
        out.arn
            .context("STS GetCallerIdentity answered without an ARN")
    }
}
