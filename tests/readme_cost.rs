//! README's cost table is generated, not typed: the section between `<!-- cost:begin -->` and
//! `<!-- cost:end -->` is exactly what `bench/cost.sh` last wrote (bench/results/cost.md), and
//! that file names the measured runs it was made from, which are committed.

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn readme_cost_section_is_the_benchmarks_output() {
    let readme = read("README.md");
    let (begin, end) = ("<!-- cost:begin -->\n", "<!-- cost:end -->\n");
    let a = readme
        .find(begin)
        .expect("README has the cost:begin marker")
        + begin.len();
    let b = readme.find(end).expect("README has the cost:end marker");
    assert_eq!(
        &readme[a..b],
        read("bench/results/cost.md"),
        "README's cost section differs from bench/results/cost.md: run bench/cost.sh"
    );
    for run in [
        "bench/results/cost-before.json",
        "bench/results/cost-after.json",
    ] {
        let r: serde_json::Value = serde_json::from_str(&read(run)).unwrap();
        assert!(
            r["checks"].as_u64().unwrap() >= 1000,
            "{run}: a run of too few checks"
        );
    }
}
