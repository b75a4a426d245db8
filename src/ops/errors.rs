//! Operators' errors as one sentence with a hint. Store and SDK failures arrive as long chains
//! with SDK internals; what an operator meets most (AWS credentials, a missing table or
//! bucket, an unreachable endpoint) becomes a sentence that says what to do.

/// One sentence for an error, with a hint for the failures operators meet: AWS credentials,
/// a missing table, an unreachable endpoint. SDK internals stay out of it.
pub fn explain(e: &anyhow::Error) -> String {
    let full = sentence(e);
    let lower = full.to_ascii_lowercase();
    let aws = lower.contains("dynamodb") || lower.contains("s3 ") || lower.contains("sts ");
    if aws
        && (lower.contains("credential")
            || lower.contains("unrecognizedclient")
            || lower.contains("invalidclienttokenid")
            || lower.contains("invalidaccesskeyid")
            || lower.contains("expiredtoken")
            || lower.contains("security token"))
    {
        return "AWS credentials are missing or were refused; set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or run `aws configure`".to_owned();
    }
    if aws && lower.contains("resourcenotfound") {
        return "the DynamoDB table does not exist in this account and region; check --table (UPDRAFT_TABLE) and AWS_REGION, or deploy with `sam deploy`".to_owned();
    }
    if aws && lower.contains("nosuchbucket") {
        return "the S3 bucket does not exist; check --bucket (UPDRAFT_BUCKET) and AWS_REGION"
            .to_owned();
    }
    if aws
        && (lower.contains("dispatch failure")
            || lower.contains("timeout")
            || lower.contains("timed out")
            || lower.contains("connection refused"))
    {
        return "cannot reach AWS; check AWS_REGION and AWS_ENDPOINT_URL (if set) and the network"
            .to_owned();
    }
    full
}

/// The error and its causes, each said once: a cause whose text the error's own message
/// already quotes (`the bundle is not valid: {0}`) is not repeated.
fn sentence(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_failures_become_one_sentence_with_a_hint() {
        let creds = anyhow::anyhow!(
            "the release store is unavailable: DynamoDB Query: dispatch failure: other: no credentials provider: CredentialsNotLoaded(..)"
        );
        let said = explain(&creds);
        assert!(
            said.contains("AWS_PROFILE") && said.contains("aws configure"),
            "{said}"
        );
        assert!(!said.contains("CredentialsNotLoaded"));
        let table = anyhow::anyhow!(
            "DynamoDB Query: ResourceNotFoundException: Requested resource not found"
        );
        assert!(explain(&table).contains("UPDRAFT_TABLE"));
        assert_eq!(explain(&anyhow::anyhow!("no app x.y")), "no app x.y");
    }

    #[test]
    fn a_quoted_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("the folder no-index has no index.html at its root")]
        struct Layout;
        #[derive(Debug, thiserror::Error)]
        #[error("the bundle is not valid: {0}")]
        struct Invalid(#[from] Layout);
        let e = anyhow::Error::from(Invalid(Layout));
        assert_eq!(
            explain(&e),
            "the bundle is not valid: the folder no-index has no index.html at its root"
        );
        let wrapped = anyhow::Error::from(Layout).context("release failed");
        assert_eq!(
            explain(&wrapped),
            "release failed: the folder no-index has no index.html at its root"
        );
    }
}
