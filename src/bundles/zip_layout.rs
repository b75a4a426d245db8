//! Making and checking the zip the plugin unpacks (protocol.md §3): a zip that either Android or
//! iOS would refuse is refused here, before any device downloads it.

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// Why a zip (or folder) cannot be a bundle. Each message tells the operator what to change.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("the file is not a readable zip archive: {0}")]
    NotAZip(String),
    #[error("the zip is empty")]
    Empty,
    #[error("the zip has more than {0} entries")]
    TooManyEntries(usize),
    #[error(
        "entry {0:?} uses a backslash or NUL in its path; both Android and iOS refuse it (zip with / separators)"
    )]
    WindowsPath(String),
    #[error("entry {0:?} has an absolute or parent (..) path; the plugin refuses it")]
    UnsafePath(String),
    #[error(
        "the zip has one wrapper folder {0:?} next to {1:?}: Android can open it but iOS cannot; zip the folder's contents instead"
    )]
    WrapperWithJunk(String, String),
    #[error("there is no index.html at the root of the zip, nor inside a single root folder")]
    NoIndexHtml,
    #[error(
        "no file in the bundle calls notifyAppReady(): the plugin would roll it back after appReadyTimeout (pass --no-code-check to release it anyway)"
    )]
    NoNotifyAppReady,
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the folder {0} has no index.html at its root")]
    FolderWithoutIndex(PathBuf),
}

/// What a valid bundle looks like once unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `""` when `index.html` is at the zip root, else the single root folder (`"www/"`).
    pub root: String,
    pub files: usize,
    /// Total uncompressed size of the files.
    pub unpacked_bytes: u64,
    /// Whether some HTML or JS file mentions `notifyAppReady`.
    pub calls_notify_app_ready: bool,
}

const MAX_ENTRIES: usize = 100_000;
/// How much of one file is scanned for `notifyAppReady` (a bundle's JS is far smaller).
const SCAN_LIMIT: u64 = 64 << 20;

fn is_ignored_by_android(name: &str) -> bool {
    name.starts_with("__MACOSX") || name.starts_with('.')
}

/// Checks a zip the way both plugins will unpack it, and scans it for `notifyAppReady`.
pub fn check_layout(zip_bytes: &[u8]) -> Result<Layout, LayoutError> {
    let mut archive =
        ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| LayoutError::NotAZip(e.to_string()))?;
    if archive.is_empty() {
        return Err(LayoutError::Empty);
    }
    if archive.len() > MAX_ENTRIES {
        return Err(LayoutError::TooManyEntries(MAX_ENTRIES));
    }
    let mut files = BTreeSet::new();
    // Root entries as iOS counts them: every first path component, with whether it is a folder.
    let mut roots: BTreeSet<(String, bool)> = BTreeSet::new();
    let mut unpacked_bytes = 0u64;
    let mut calls_notify_app_ready = false;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| LayoutError::NotAZip(e.to_string()))?;
        let name = entry.name().to_owned();
        if name.contains('\\') || name.contains('\0') {
            return Err(LayoutError::WindowsPath(name));
        }
        let trimmed = name.strip_suffix('/').unwrap_or(&name);
        let bad_component = trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
        let drive = trimmed.as_bytes().get(1) == Some(&b':');
        if name.starts_with('/') || bad_component || drive {
            return Err(LayoutError::UnsafePath(name));
        }
        let is_dir = entry.is_dir();
        let (first, nested) = match trimmed.split_once('/') {
            Some((first, _)) => (first, true),
            None => (trimmed, is_dir),
        };
        roots.insert((first.to_owned(), nested));
        if !is_dir {
            unpacked_bytes = unpacked_bytes.saturating_add(entry.size());
            if !calls_notify_app_ready && is_code(trimmed) {
                let mut text = Vec::new();
                (&mut entry)
                    .take(SCAN_LIMIT)
                    .read_to_end(&mut text)
                    .map_err(|e| LayoutError::NotAZip(e.to_string()))?;
                calls_notify_app_ready = memfind(&text, b"notifyAppReady");
            }
            files.insert(trimmed.to_owned());
        }
    }
    // A name can be both a file and a folder root only in a broken zip; treat as two entries.
    let root = if files.contains("index.html") {
        String::new()
    } else {
        let single_dir = match roots.iter().collect::<Vec<_>>().as_slice() {
            [(name, true)] => Some(name.clone()),
            _ => None,
        };
        match single_dir {
            Some(d) if files.contains(&format!("{d}/index.html")) => format!("{d}/"),
            _ => {
                let android_view: Vec<_> = roots
                    .iter()
                    .filter(|(n, _)| !is_ignored_by_android(n))
                    .collect();
                if let [(d, true)] = android_view.as_slice()
                    && files.contains(&format!("{d}/index.html"))
                {
                    let junk = roots
                        .iter()
                        .find(|(n, _)| n != d)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default();
                    return Err(LayoutError::WrapperWithJunk(d.clone(), junk));
                }
                return Err(LayoutError::NoIndexHtml);
            }
        }
    };
    Ok(Layout {
        root,
        files: files.len(),
        unpacked_bytes,
        calls_notify_app_ready,
    })
}

fn is_code(name: &str) -> bool {
    [".js", ".mjs", ".cjs", ".html", ".htm"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Zips a built web folder with its files at the zip root and `/` separators, the layout
/// `capgo bundle zip` makes. Entries are sorted and timestamps fixed, so the same folder always
/// gives the same bytes and checksum, and re-releasing it is a no-op.
pub fn zip_folder(dir: &Path) -> Result<Vec<u8>, LayoutError> {
    if !dir.join("index.html").is_file() {
        return Err(LayoutError::FolderWithoutIndex(dir.to_path_buf()));
    }
    let mut entries = Vec::new();
    collect(dir, "", &mut entries, 0)?;
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    for (name, path) in entries {
        match path {
            None => zip
                .add_directory(name, options)
                .map_err(|e| LayoutError::NotAZip(e.to_string()))?,
            Some(p) => {
                let bytes = std::fs::read(&p).map_err(|e| io_err(&p, e))?;
                zip.start_file(name, options)
                    .map_err(|e| LayoutError::NotAZip(e.to_string()))?;
                zip.write_all(&bytes).map_err(|e| io_err(&p, e))?;
            }
        }
    }
    let cursor = zip
        .finish()
        .map_err(|e| LayoutError::NotAZip(e.to_string()))?;
    Ok(cursor.into_inner())
}

fn io_err(p: &Path, e: std::io::Error) -> LayoutError {
    LayoutError::Io(p.to_path_buf(), e)
}

/// Walks `dir` in name order; a `None` path is a folder entry. Skips Finder junk.
fn collect(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, Option<PathBuf>)>,
    depth: usize,
) -> Result<(), LayoutError> {
    if depth > 64 {
        return Err(LayoutError::Io(
            dir.to_path_buf(),
            std::io::Error::other("folders nested too deep"),
        ));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().into_string().map_err(|n| {
            LayoutError::Io(dir.join(n), std::io::Error::other("file name is not UTF-8"))
        })?;
        if name == ".DS_Store" || name == "__MACOSX" || name.contains('\\') {
            continue;
        }
        names.push(name);
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?;
        let zip_name = format!("{prefix}{name}");
        if meta.is_dir() {
            out.push((format!("{zip_name}/"), None));
            collect(&path, &format!("{zip_name}/"), out, depth + 1)?;
        } else if meta.is_file() {
            out.push((zip_name, Some(path)));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A zip with the given entries (a name ending in `/` is a folder).
    pub fn make_zip(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let o = SimpleFileOptions::default();
        for (name, body) in entries {
            if name.ends_with('/') {
                zip.add_directory(*name, o).unwrap();
            } else {
                zip.start_file(*name, o).unwrap();
                zip.write_all(body.as_bytes()).unwrap();
            }
        }
        zip.finish().unwrap().into_inner()
    }

    const APP: &str = "<script>CapacitorUpdater.notifyAppReady()</script>";

    #[test]
    fn accepts_root_and_single_folder_layouts() {
        let l = check_layout(&make_zip(&[
            ("index.html", APP),
            ("assets/", ""),
            ("assets/a.js", "x"),
        ]))
        .unwrap();
        assert_eq!(l.root, "");
        assert_eq!(l.files, 2);
        assert!(l.calls_notify_app_ready);
        let l = check_layout(&make_zip(&[
            ("www/", ""),
            ("www/index.html", "<p>"),
            ("www/app.js", "x"),
        ]))
        .unwrap();
        assert_eq!(l.root, "www/");
        assert!(!l.calls_notify_app_ready);
        // Without a folder entry, too.
        assert_eq!(
            check_layout(&make_zip(&[("www/index.html", APP)]))
                .unwrap()
                .root,
            "www/"
        );
        // Dotfiles next to a root index.html are fine on both platforms.
        assert_eq!(
            check_layout(&make_zip(&[("index.html", APP), (".DS_Store", "")]))
                .unwrap()
                .root,
            ""
        );
    }

    #[test]
    fn refuses_what_a_platform_cannot_open() {
        let e = |entries: &[(&str, &str)]| check_layout(&make_zip(entries)).unwrap_err();
        assert!(matches!(
            e(&[("www/index.html", APP), ("__MACOSX/", "")]),
            LayoutError::WrapperWithJunk(..)
        ));
        assert!(matches!(
            e(&[("www/index.html", APP), (".DS_Store", "")]),
            LayoutError::WrapperWithJunk(..)
        ));
        assert!(matches!(
            e(&[("a/index.html", APP), ("b/x", "")]),
            LayoutError::NoIndexHtml
        ));
        assert!(matches!(e(&[("app.js", "")]), LayoutError::NoIndexHtml));
        assert!(matches!(
            e(&[("www/a/index.html", "")]),
            LayoutError::NoIndexHtml
        ));
        assert!(matches!(
            e(&[("index.html", APP), ("a\\b.js", "")]),
            LayoutError::WindowsPath(_)
        ));
        assert!(matches!(
            e(&[("index.html", APP), ("../evil.js", "")]),
            LayoutError::UnsafePath(_)
        ));
        assert!(matches!(
            e(&[("index.html", APP), ("/etc/x", "")]),
            LayoutError::UnsafePath(_)
        ));
        assert!(matches!(
            e(&[("index.html", APP), ("a/../../x", "")]),
            LayoutError::UnsafePath(_)
        ));
        assert!(matches!(e(&[]), LayoutError::Empty));
        assert!(matches!(
            check_layout(b"PK not really"),
            Err(LayoutError::NotAZip(_))
        ));
    }

    #[test]
    fn folder_zip_is_deterministic_and_valid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), APP).unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").unwrap();
        std::fs::write(dir.path().join(".DS_Store"), "junk").unwrap();
        let a = zip_folder(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").unwrap();
        let b = zip_folder(dir.path()).unwrap();
        assert_eq!(a, b, "same content, same bytes, whatever the mtimes");
        let layout = check_layout(&a).unwrap();
        assert_eq!((layout.root.as_str(), layout.files), ("", 2));
        let names: Vec<String> = {
            let mut z = ZipArchive::new(Cursor::new(&a)).unwrap();
            (0..z.len())
                .map(|i| z.by_index(i).unwrap().name().to_owned())
                .collect()
        };
        assert_eq!(names, ["assets/", "assets/app.js", "index.html"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            zip_folder(empty.path()),
            Err(LayoutError::FolderWithoutIndex(_))
        ));
    }
}
