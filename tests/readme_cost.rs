//! README's cost section is generated, not typed: the section between `<!-- cost:begin -->` and
//! `<!-- cost:end -->` names the command that made it (`python3 bench/device_month.py table …`,
//! which bench/device_month.sh runs), from the measured runs committed in bench/results/. This
//! test runs that command again, with the bench's own table code, and compares.

use std::path::Path;
use std::process::Command;

const COMMAND: &str = "python3 bench/device_month.py table ";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn section(readme: &str) -> &str {
    let (begin, end) = ("<!-- cost:begin -->\n", "<!-- cost:end -->\n");
    let a = readme
        .find(begin)
        .expect("README has the cost:begin marker")
        + begin.len();
    let b = readme.find(end).expect("README has the cost:end marker");
    &readme[a..b]
}

/// The table command's arguments, from the section's first line.
fn table_args(section: &str) -> Vec<String> {
    let first = section.lines().next().unwrap_or_default();
    let start = first
        .find(COMMAND)
        .unwrap_or_else(|| panic!("the cost section's first line names no `{COMMAND}…`: {first}"))
        + COMMAND.len();
    let end = first[start..].find(')').expect("the command ends with `)`") + start;
    let args: Vec<String> = first[start..end]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    for a in &args {
        assert!(
            a.starts_with("--") || a.starts_with("bench/results/"),
            "unexpected argument {a:?} in {first}"
        );
    }
    args
}

#[test]
fn readme_cost_section_is_the_benchmarks_output() {
    let readme = read("README.md");
    let section = section(&readme);
    let args = table_args(section);
    let out = Command::new("python3")
        .arg("bench/device_month.py")
        .arg("table")
        .args(&args)
        .current_dir(root())
        .output()
        .expect("python3 runs bench/device_month.py (the table needs only its standard library)");
    assert!(
        out.status.success(),
        "bench/device_month.py table failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        section, generated,
        "README's cost section differs from what bench/device_month.py makes of the committed \
         runs: run bench/device_month.sh (or the table command named in the section)"
    );
}

#[test]
fn the_measured_runs_are_big_enough() {
    let section_text = read("README.md");
    let args = table_args(section(&section_text));
    let runs: Vec<&String> = args.iter().filter(|a| a.ends_with(".json")).collect();
    assert!(!runs.is_empty(), "the table names no run");
    for run in runs {
        let r: serde_json::Value = serde_json::from_str(&read(run)).unwrap();
        let sample = &r["sample"];
        let (devices, sessions) = (
            sample["devices"].as_u64().unwrap(),
            sample["sessions"].as_u64().unwrap(),
        );
        assert!(
            devices >= 40 && devices * sessions >= 300,
            "{run}: a sample of {devices} devices × {sessions} sessions is too small"
        );
        for kind in [
            "check_up_to_date",
            "check_offer",
            "batch_launch",
            "batch_background",
            "batch_launch_set",
            "batch_download",
        ] {
            let k = &r["kinds"][kind];
            assert!(
                k["n"].as_u64().unwrap() >= 20,
                "{run}: {kind}: too few requests measured"
            );
            assert!(
                k["billed_ms_mean"].as_f64().unwrap() >= 1.0,
                "{run}: {kind}: not timed"
            );
        }
    }
}
