//! The files of a bundle zip as delta updates store them (protocol.md §4): one object per file
//! content, Brotli-compressed with `.br` appended when that saves more than 10 bytes, as the
//! Capgo CLI does, so a file shared by many versions is stored (and downloaded) once.

use std::collections::HashSet;
use std::io::{Cursor, Read, Write};

use zip::ZipArchive;

use crate::bundles::sha256_hex;
use crate::bundles::zip_layout::LayoutError;
use crate::domain::manifest::{ManifestFile, file_key};

/// Brotli is used only when it saves more than this many bytes (the Capgo CLI's rule).
const BROTLI_MIN_SAVING: usize = 10;

/// One file ready to store: its manifest entry and the stored body.
#[derive(Debug, Clone)]
pub struct PreparedFile {
    pub entry: ManifestFile,
    pub body: Vec<u8>,
}

/// Brotli at the highest quality: files are compressed once, at release, and downloaded by
/// every device.
pub fn brotli_compress(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, 22);
        w.write_all(bytes).expect("writing to a Vec cannot fail");
    }
    out
}

/// The files of a checked zip (`root` from [`crate::bundles::zip_layout::check_layout`] is stripped, as
/// the plugin flattens a single root folder), in zip order, folders left out.
pub fn prepare_files(
    zip_bytes: &[u8],
    root: &str,
    app_id: &str,
) -> Result<Vec<PreparedFile>, LayoutError> {
    let not_zip = |e: zip::result::ZipError| LayoutError::NotAZip(e.to_string());
    let mut archive = ZipArchive::new(Cursor::new(zip_bytes)).map_err(not_zip)?;
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(not_zip)?;
        if entry.is_dir() {
            continue;
        }
        let Some(name) = entry.name().strip_prefix(root).map(str::to_owned) else {
            continue;
        };
        if !names.insert(name.clone()) {
            return Err(LayoutError::NotAZip(format!(
                "the zip holds {name:?} twice; the plugin refuses duplicate files"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size().min(64 << 20) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| LayoutError::NotAZip(e.to_string()))?;
        let hash = sha256_hex(&bytes);
        let compressed = brotli_compress(&bytes);
        let brotli = compressed.len() + BROTLI_MIN_SAVING < bytes.len();
        let body = if brotli { compressed } else { bytes };
        out.push(PreparedFile {
            entry: ManifestFile {
                file_name: if brotli { format!("{name}.br") } else { name },
                key: file_key(app_id, &hash, brotli),
                file_hash: hash,
                size: body.len() as u64,
            },
            body,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundles::zip_layout::tests::make_zip;

    #[test]
    fn files_are_content_addressed_and_compressed_when_it_pays() {
        let big = "let x = 1;\n".repeat(200);
        let zip = make_zip(&[
            ("www/", ""),
            ("www/index.html", "<p>"),
            ("www/app.js", &big),
            ("www/copy.js", &big),
        ]);
        let files = prepare_files(&zip, "www/", "com.example.app").unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.entry.file_name.as_str()).collect();
        assert_eq!(names, ["index.html", "app.js.br", "copy.js.br"]);
        // Tiny files stay as they are.
        assert_eq!(files[0].body, b"<p>");
        assert_eq!(files[0].entry.file_hash, sha256_hex(b"<p>"));
        assert_eq!(
            files[0].entry.key,
            format!("com.example.app/files/{}", sha256_hex(b"<p>"))
        );
        // Same content, same key; the hash is of the original file.
        assert_eq!(files[1].entry.key, files[2].entry.key);
        assert!(files[1].entry.key.ends_with(".br"));
        assert_eq!(files[1].entry.file_hash, sha256_hex(big.as_bytes()));
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&files[1].body[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, big.as_bytes());
        assert_eq!(files[1].entry.size, files[1].body.len() as u64);
    }
}
