//! The house keeps its shape: the import graph between the files of src/ has no cycle, the
//! core imports nothing outside itself, the operations layer imports no entrypoint, nothing
//! but main.rs imports the command line, and no file or function grows past what a reader
//! takes in at once. Read from the sources as text, like `template_matches_code.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest file, in lines before its tests.
const MAX_FILE_LINES: usize = 700;
/// Longest function, in lines.
const MAX_FN_LINES: usize = 120;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every .rs file under src/: its module path (`["store", "dynamo"]` for
/// src/store/dynamo/mod.rs) and its code before `#[cfg(test)]`, without comments.
fn modules() -> BTreeMap<Vec<String>, (String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(src()).unwrap();
        let mut segments: Vec<String> = rel
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let last = segments.pop().unwrap();
        match last.as_str() {
            "mod.rs" | "lib.rs" | "main.rs" => {}
            name => segments.push(name.trim_end_matches(".rs").to_owned()),
        }
        if last == "main.rs" {
            segments = vec!["<main>".to_owned()];
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text
            .split("\n#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .map(|l| match l.find("//") {
                Some(i) if !l[..i].contains('"') => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.insert(segments, (format!("src/{}", rel.display()), code));
    }
    out
}

/// The leaves of a `use` tree: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn use_leaves(tree: &str) -> Vec<String> {
    // Aliases (`x as y`) name the same item.
    let mut plain = String::new();
    let mut words = tree.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w == "as" {
            // Skip the alias, keep what follows it (`,` or `}`).
            if let Some(alias) = words.next() {
                plain.push_str(alias.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'));
            }
            continue;
        }
        plain.push_str(w);
    }
    let tree = plain;
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len() - 1];
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| use_leaves(&format!("{prefix}{p}")))
        .collect()
}

/// The module paths a file names: in `use` statements and inline (`crate::a::b::f(…)`),
/// made absolute.
fn referenced(
    module: &[String],
    is_folder: bool,
    children: &BTreeSet<String>,
    code: &str,
) -> BTreeSet<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let ok_before = i == 0
            || !rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if ok_before {
            paths.extend(use_leaves(&after[..end]));
        }
        rest = &after[end.min(after.len())..];
    }
    // A folder's own children, named without `self::` (`mod devices; use devices::X;`,
    // `actions::confirm`).
    for child in children {
        let key = format!("{child}::");
        for (i, _) in code.match_indices(&key) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            paths.push(format!("self::{child}"));
        }
    }
    for key in ["crate::", "super::"] {
        for (i, _) in code.match_indices(key) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path);
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let mut segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = match segs.first() {
            Some(&"crate") => {
                segs.remove(0);
                Vec::new()
            }
            Some(&"super") => {
                let mut b = module.to_vec();
                // In a folder's mod.rs, `super` is the folder's parent.
                b.pop();
                segs.remove(0);
                while segs.first() == Some(&"super") {
                    b.pop();
                    segs.remove(0);
                }
                b
            }
            Some(&"self") if is_folder => {
                segs.remove(0);
                module.to_vec()
            }
            Some(first) if is_folder && children.contains(*first) => module.to_vec(),
            _ => continue,
        };
        base.extend(segs.into_iter().map(str::to_owned));
        out.insert(base);
    }
    out
}

/// The file a module path lands in: its longest prefix that is a module.
fn resolve<'m>(
    modules: &'m BTreeMap<Vec<String>, (String, String)>,
    path: &[String],
) -> Option<&'m str> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).map(|(file, _)| file.as_str()))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, (file, code)) in &modules {
        let is_folder = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m[module.len()].clone())
            .collect();
        let entry = edges.entry(file.clone()).or_default();
        for path in referenced(module, is_folder, &children, code) {
            if let Some(target) = resolve(&modules, &path)
                && target != file
                && target != "src/lib.rs"
            {
                entry.insert(target.to_owned());
            }
        }
    }
    edges
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_file_of_src_is_in_an_import_cycle() {
    let edges = graph();
    assert!(
        edges.len() > 50 && edges.values().map(BTreeSet::len).sum::<usize>() > 150,
        "the scan found too few files or imports: {edges:?}"
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles between files: {found:#?}");
}

#[test]
fn the_core_and_the_operations_import_no_adapter_above_them() {
    let edges = graph();
    let mut problems = Vec::new();
    for (file, targets) in &edges {
        for t in targets {
            let bad = if file.starts_with("src/domain/") {
                !t.starts_with("src/domain/")
            } else if file.starts_with("src/ops/") {
                ["src/cli/", "src/dashboard/", "src/api/", "src/runtime/"]
                    .iter()
                    .any(|p| t.starts_with(p))
            } else {
                t.starts_with("src/cli/") && !file.starts_with("src/cli/") && file != "src/main.rs"
            };
            if bad {
                problems.push(format!("{file} imports {t}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn files_and_functions_stay_readable() {
    let mut problems = Vec::new();
    for (file, code) in modules().into_values() {
        let lines: Vec<&str> = code.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            problems.push(format!("{file}: {} lines before its tests", lines.len()));
        }
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "async fn ",
                "pub async fn ",
                "pub(crate) fn ",
            ]
            .iter()
            .chain(&[
                "pub(super) fn ",
                "pub(crate) async fn ",
                "pub(super) async fn ",
            ])
            .any(|p| trimmed.starts_with(p));
            if !is_fn || trimmed.ends_with(';') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let closing = " ".repeat(indent) + "}";
            if let Some(end) = lines[start + 1..]
                .iter()
                .position(|l| l.trim_end() == closing)
                && end + 2 > MAX_FN_LINES
            {
                problems.push(format!(
                    "{file}:{}: a function of {} lines: {}",
                    start + 1,
                    end + 2,
                    trimmed.chars().take(60).collect::<String>()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_scan_sees_imports_and_cycles() {
    assert_eq!(
        use_leaves("crate::a::{b, c::{d, e as f}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
    let module = vec!["store".to_owned(), "dynamo".to_owned(), "items".to_owned()];
    let got = referenced(
        &module,
        false,
        &BTreeSet::new(),
        "use super::{DynamoStore, s};",
    );
    assert!(got.contains(&vec!["store".into(), "dynamo".into(), "DynamoStore".into()]));
    let folder = vec!["store".to_owned(), "dynamo".to_owned()];
    let children = BTreeSet::from(["devices".to_owned()]);
    let got = referenced(&folder, true, &children, "pub use devices::DynamoDevices;");
    assert!(got.contains(&vec![
        "store".into(),
        "dynamo".into(),
        "devices".into(),
        "DynamoDevices".into()
    ]));
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(cycles(&edges), [["a", "b", "c"]]);
}
