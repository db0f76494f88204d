//! The advisory index: import once, look up by package many times.
//!
//! Advisory databases are tens of thousands of small files (OSV JSON, OSV
//! YAML, RustSec Markdown). Parsing them all for every scan would cost
//! seconds; a scan needs only the records of the packages its SBOM names.
//! [`import`] parses every file once (a bad file is reported and skipped,
//! never fatal) and writes one index file:
//!
//! ```text
//! FWADV2\n
//! {header JSON: imported_at, sources, counts}\n
//! {key table JSON: [[key, offset, length], …] sorted by key}\n
//! <blob: the advisories of each key at offset/length, binary (see codec)>
//! ```
//!
//! [`Index::open`] reads the two header lines; each lookup binary-searches
//! the key table and reads just its slice of the blob. Entries were JSON in
//! format 1 (`FWADV1`); decoding them was most of a large scan, so format 2
//! stores them in [`codec`]'s binary layout. An index in an older format is
//! refused with a request to re-import, never misread. The file is written
//! to a temporary name and renamed, so a reader never sees half an index.
//! Advisory bodies (`details`) are not kept: the index holds what matching
//! and reporting need.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use fleetward_sca::advisory::{self, Advisory};
use fleetward_sca::scan::AdvisorySource;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The index file name inside an advisory directory.
pub const INDEX_FILE: &str = "advisories.idx";
const MAGIC: &str = "FWADV2";
/// Magic lines of earlier formats, refused with a request to re-import.
const OLD_MAGICS: &[&str] = &["FWADV1"];

pub mod codec;
/// Larger advisory files are refused (the largest real one is ~1 MiB).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no advisory index in {0}: run `fleetward advisories import <DIR|ZIP>` first")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: the advisory index is in an older format ({found}) than this fleetward reads ({MAGIC}): re-import it with `fleetward advisories import <DIR|ZIP>`"
    )]
    OldFormat { path: PathBuf, found: String },
    #[error("{path}: corrupt advisory index: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Zip { path: PathBuf, message: String },
    #[error("nothing imported: no advisory file found in {0}")]
    Empty(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the index header records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    #[serde(with = "time::serde::rfc3339")]
    pub imported_at: OffsetDateTime,
    pub sources: Vec<String>,
    pub advisories: usize,
    pub withdrawn: usize,
    pub keys: usize,
}

/// One file that could not be imported.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub file: String,
    pub error: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub header: Header,
    pub files_read: usize,
    pub skipped: usize,
    pub errors: Vec<FileError>,
    pub index: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OsvJson,
    OsvYaml,
    RustSec(&'static str),
}

/// Decides from the path what a file is; `None` for files that are not
/// advisories (licences, READMEs, source-commit notes).
fn classify(path: &str) -> Option<Kind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    if lower.starts_with('.') {
        return None;
    }
    // RustSec: `crates/<pkg>/RUSTSEC-*.md` and `rust/<component>/CVE-*.md`;
    // Markdown without TOML front matter (READMEs) is skipped on reading.
    if lower.ends_with(".md") || (name.starts_with("RUSTSEC-") && lower.ends_with(".toml")) {
        // `<collection>/<package>/<file>`: the collection is two levels up.
        let collection = match path.rsplit('/').nth(2) {
            Some("rust") => "rust",
            _ => "crates",
        };
        return Some(Kind::RustSec(collection));
    }
    if lower.ends_with(".json") {
        return Some(Kind::OsvJson);
    }
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return Some(Kind::OsvYaml);
    }
    None
}

fn parse_file(kind: Kind, text: &str) -> Result<Advisory, String> {
    match kind {
        Kind::OsvJson => advisory::parse_osv_json(text).map_err(|e| e.to_string()),
        Kind::OsvYaml => {
            let value: serde_json::Value =
                serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
                    Some(l) => format!("line {}, column {}: {e}", l.line(), l.column()),
                    None => e.to_string(),
                })?;
            advisory::osv_from_value(value).map_err(|e| e.to_string())
        }
        Kind::RustSec(collection) => {
            advisory::parse_rustsec(text, collection).map_err(|e| e.to_string())
        }
    }
}

struct Collector {
    by_id: HashMap<String, Advisory>,
    files_read: usize,
    skipped: usize,
    errors: Vec<FileError>,
}

impl Collector {
    fn add(&mut self, name: &str, bytes: Result<Vec<u8>, String>) {
        let Some(kind) = classify(name) else {
            self.skipped += 1;
            return;
        };
        let result = bytes.and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_owned()));
        if let (Kind::RustSec(_), Ok(text)) = (kind, &result)
            && name.to_ascii_lowercase().ends_with(".md")
            && !text.trim_start().starts_with("```toml")
        {
            self.skipped += 1;
            return;
        }
        self.files_read += 1;
        let advisory = result.and_then(|text| parse_file(kind, &text));
        match advisory {
            Ok(adv) => {
                // One record per id: RustSec's own format wins over its OSV
                // export (it keeps cargo-audit's requirement semantics).
                let keep_old = self.by_id.get(&adv.id).is_some_and(|old| {
                    old.affected.iter().any(|a| a.rustsec.is_some())
                        && !adv.affected.iter().any(|a| a.rustsec.is_some())
                });
                if !keep_old {
                    self.by_id.insert(adv.id.clone(), adv);
                }
            }
            Err(error) => self.errors.push(FileError {
                file: name.to_owned(),
                error,
            }),
        }
    }

    fn walk_dir(&mut self, root: &Path) -> Result<(), IndexError> {
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for path in entries {
                let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let name = path.to_string_lossy().replace('\\', "/");
                if classify(&name).is_none() {
                    self.skipped += 1;
                    continue;
                }
                let bytes = if meta.len() > MAX_FILE_BYTES {
                    Err(format!("larger than {MAX_FILE_BYTES} bytes"))
                } else {
                    std::fs::read(&path).map_err(|e| e.to_string())
                };
                self.add(&name, bytes);
            }
        }
        Ok(())
    }

    fn walk_zip(&mut self, path: &Path) -> Result<(), IndexError> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let zerr = |e: zip::result::ZipError| IndexError::Zip {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut archive = zip::ZipArchive::new(file).map_err(zerr)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(zerr)?;
            if entry.is_dir() {
                continue;
            }
            let name = format!("{}!/{}", path.display(), entry.name());
            if classify(entry.name()).is_none() {
                self.skipped += 1;
                continue;
            }
            // Bounded read: the header's size may lie (zip bombs).
            let mut bytes = Vec::new();
            let read = (&mut entry)
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string());
            let bytes = match read {
                Ok(n) if n as u64 > MAX_FILE_BYTES => {
                    Err(format!("larger than {MAX_FILE_BYTES} bytes"))
                }
                Ok(_) => Ok(bytes),
                Err(e) => Err(e),
            };
            self.add(&name, bytes);
        }
        Ok(())
    }
}

/// Imports advisory directories and zip files into `out_dir`, replacing the
/// index there. `now` is recorded as the import time (the policy's maximum
/// age is measured from it).
pub fn import(
    sources: &[PathBuf],
    out_dir: &Path,
    now: OffsetDateTime,
) -> Result<ImportReport, IndexError> {
    let mut c = Collector {
        by_id: HashMap::new(),
        files_read: 0,
        skipped: 0,
        errors: Vec::new(),
    };
    for src in sources {
        let meta = std::fs::metadata(src).map_err(io(src))?;
        if meta.is_dir() {
            c.walk_dir(src)?;
        } else {
            c.walk_zip(src)?;
        }
    }
    if c.by_id.is_empty() {
        return Err(IndexError::Empty(
            sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let withdrawn = c.by_id.values().filter(|a| a.withdrawn.is_some()).count();
    let mut by_key: BTreeMap<String, Vec<&Advisory>> = BTreeMap::new();
    let mut ids: Vec<&String> = c.by_id.keys().collect();
    ids.sort();
    for id in ids {
        let adv = &c.by_id[id];
        let mut keys: Vec<String> = adv.affected.iter().map(|a| a.key()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            by_key.entry(key).or_default().push(adv);
        }
    }
    let header = Header {
        imported_at: now,
        sources: sources.iter().map(|p| p.display().to_string()).collect(),
        advisories: c.by_id.len(),
        withdrawn,
        keys: by_key.len(),
    };
    let mut blob = Vec::new();
    let mut table: Vec<(String, u64, u64)> = Vec::with_capacity(by_key.len());
    for (key, list) in &by_key {
        let start = blob.len() as u64;
        codec::encode(list, &mut blob);
        table.push((key.clone(), start, blob.len() as u64 - start));
    }
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let path = out_dir.join(INDEX_FILE);
    let tmp = out_dir.join(format!("{INDEX_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(f, "{MAGIC}")?;
        serde_json::to_writer(&mut f, &header)?;
        writeln!(f)?;
        serde_json::to_writer(&mut f, &table)?;
        writeln!(f)?;
        f.write_all(&blob)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(io(&path))?;
    Ok(ImportReport {
        header,
        files_read: c.files_read,
        skipped: c.skipped,
        errors: c.errors,
        index: path,
    })
}

/// An open index.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    header: Header,
    table: Vec<(String, u64, u64)>,
    blob_start: u64,
    file: std::fs::File,
}

impl Index {
    /// Opens the index in `dir` (the directory `import` wrote to).
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let path = dir.join(INDEX_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IndexError::Missing(dir.to_owned()));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let corrupt = |message: String| IndexError::Corrupt {
            path: path.clone(),
            message,
        };
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        let mut consumed = 0u64;
        let mut next_line = |reader: &mut BufReader<std::fs::File>, line: &mut String| {
            line.clear();
            let n = reader.read_line(line).map_err(io(&path))?;
            consumed += n as u64;
            Ok::<_, IndexError>(consumed)
        };
        next_line(&mut reader, &mut line)?;
        let magic = line.trim_end();
        if OLD_MAGICS.contains(&magic) {
            return Err(IndexError::OldFormat {
                path: path.clone(),
                found: magic.to_owned(),
            });
        }
        if magic != MAGIC {
            return Err(corrupt("not a fleetward advisory index (bad magic)".into()));
        }
        next_line(&mut reader, &mut line)?;
        let header: Header =
            serde_json::from_str(&line).map_err(|e| corrupt(format!("header: {e}")))?;
        let blob_start = next_line(&mut reader, &mut line)?;
        let table: Vec<(String, u64, u64)> =
            serde_json::from_str(&line).map_err(|e| corrupt(format!("key table: {e}")))?;
        if table.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(corrupt("key table is not sorted".into()));
        }
        let file = reader.into_inner();
        Ok(Index {
            path,
            header,
            table,
            blob_start,
            file,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn imported_at(&self) -> OffsetDateTime {
        self.header.imported_at
    }

    /// The advisories recorded under `key` (see
    /// [`fleetward_sca::advisory::index_key`]).
    pub fn get(&self, key: &str) -> Result<Vec<Advisory>, IndexError> {
        let Ok(pos) = self.table.binary_search_by(|(k, _, _)| k.as_str().cmp(key)) else {
            return Ok(Vec::new());
        };
        let (_, offset, len) = self.table[pos];
        if len > 64 * 1024 * 1024 {
            return Err(IndexError::Corrupt {
                path: self.path.clone(),
                message: format!("entry {key:?} claims {len} bytes"),
            });
        }
        let mut buf = vec![0u8; len as usize];
        read_at(&self.file, self.blob_start + offset, &mut buf).map_err(io(&self.path))?;
        codec::decode(&buf).map_err(|e| IndexError::Corrupt {
            path: self.path.clone(),
            message: format!("entry {key:?}: {e}"),
        })
    }
}

/// One positioned read (`pread`): a large scan reads thousands of entries
/// (a seek per entry doubled the system calls), from several threads at
/// once, which a shared file position would not allow.
#[cfg(unix)]
fn read_at(file: &std::fs::File, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut at: u64, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, at)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                at += n as u64;
            }
        }
    }
    Ok(())
}

impl AdvisorySource for Index {
    fn lookup(&self, key: &str) -> Result<Vec<Advisory>, String> {
        self.get(key).map_err(|e| e.to_string())
    }
}
