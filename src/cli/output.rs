//! How every operator command prints: one JSON document on stdout with `--json`, a table or a
//! sentence otherwise; errors as one sentence with a hint (and, with `--json`, as a JSON
//! `{"error", "message"}` document on stdout too).

use serde::Serialize;

/// What a command produced: the same result as JSON and as text for people.
pub struct Report {
    pub json: serde_json::Value,
    pub text: String,
}

impl Report {
    pub fn new(value: &impl Serialize, text: impl Into<String>) -> anyhow::Result<Self> {
        Ok(Report {
            json: serde_json::to_value(value)?,
            text: text.into(),
        })
    }

    /// Prints the report the way the command was asked to.
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&self.json).unwrap_or_default()
            );
        } else if !self.text.is_empty() {
            println!("{}", self.text.trim_end());
        }
    }
}

/// A table with left-aligned columns sized to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// One sentence for an error, with a hint for the failures operators meet: AWS credentials,
/// a missing table, an unreachable endpoint. SDK internals stay out of it.
pub fn explain(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
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
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x");
    }
}
