//! SBOM readers: CycloneDX JSON (1.2 to 1.6), SPDX 2.2/2.3 JSON and
//! `Cargo.lock` (v1 to v4), all into one [`Component`] list.
//!
//! The input is untrusted (it comes from a build, or from a vendor), so every
//! reader is bounded: the size is checked before parsing, nesting is walked
//! with an explicit stack and a depth limit, and the component count is
//! capped. Errors name the position: line and column for syntax, a JSON path
//! (`components[3].components[0].purl`) for content.

use serde_json::Value;

use crate::purl::{Cpe, Purl};

/// Which format a document was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SbomFormat {
    CycloneDx,
    Spdx,
    CargoLock,
}

/// Bounds on what a reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_components: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 128 * 1024 * 1024,
            max_components: 500_000,
            max_depth: 32,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SbomError {
    #[error("the document is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("more than {limit} components")]
    TooManyComponents { limit: usize },
    #[error("components nested deeper than {limit} levels at {path}")]
    TooDeep { limit: usize, path: String },
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not a CycloneDX JSON, SPDX JSON or Cargo.lock document")]
    UnknownFormat,
    #[error("{format} spec version {version:?} is not supported (supported: {supported})")]
    UnsupportedVersion {
        format: &'static str,
        version: String,
        supported: &'static str,
    },
    #[error("at {path}: {message}")]
    Invalid { path: String, message: String },
}

/// One component of the document, identified by purl and/or CPE.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Component {
    /// `bom-ref`, `SPDXID`, or `name@version` for lock files.
    pub reference: String,
    pub name: String,
    pub version: Option<String>,
    pub purl: Option<Purl>,
    pub cpes: Vec<Cpe>,
    /// Licence expressions as written (several mean all apply).
    pub licenses: Vec<String>,
    /// `Cargo.lock` `source` (registry, git, none for path crates).
    pub cargo_source: Option<String>,
    /// Where the component is in the document (JSON path or lock entry).
    pub path: String,
}

impl Component {
    pub fn is_identifiable(&self) -> bool {
        self.purl.is_some() || !self.cpes.is_empty()
    }

    /// The version to match advisories with: the purl's, else the
    /// component's, else the CPE's.
    pub fn match_version(&self) -> Option<&str> {
        self.purl
            .as_ref()
            .and_then(|p| p.version.as_deref())
            .or(self.version.as_deref())
            .or_else(|| self.cpes.iter().find_map(|c| c.version.as_deref()))
    }
}

/// A parsed document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sbom {
    pub format: SbomFormat,
    pub spec_version: String,
    pub components: Vec<Component>,
}

/// Reads a CycloneDX JSON, SPDX JSON or Cargo.lock document, telling them
/// apart by content.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Sbom, SbomError> {
    if bytes.len() > limits.max_bytes {
        return Err(SbomError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.valid_up_to());
        SbomError::Syntax {
            line,
            column,
            message: "not UTF-8".into(),
        }
    })?;
    let start = text.trim_start_matches('\u{feff}').trim_start();
    if start.starts_with('{') {
        let value: Value = serde_json::from_str(start).map_err(|e| SbomError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if value.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX") {
            cyclonedx(&value, limits)
        } else if value.get("spdxVersion").is_some() {
            spdx(&value, limits)
        } else if value.get("@context").is_some() {
            Err(SbomError::UnsupportedVersion {
                format: "SPDX",
                version: "3 (JSON-LD)".into(),
                supported: "SPDX-2.2, SPDX-2.3",
            })
        } else {
            Err(SbomError::UnknownFormat)
        }
    } else if start.starts_with('<') {
        Err(SbomError::UnsupportedVersion {
            format: "XML",
            version: "any".into(),
            supported: "JSON documents only",
        })
    } else {
        cargo_lock(text, limits)
    }
}

fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&c| c != b'\n').count() + 1;
    (line, column)
}

fn invalid(path: &str, message: impl Into<String>) -> SbomError {
    SbomError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn str_field<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a str>, SbomError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&format!("{path}.{key}"), "expected a string")),
    }
}

fn parse_purl(s: &str, path: &str) -> Result<Purl, SbomError> {
    Purl::parse(s).map_err(|e| invalid(path, e.to_string()))
}

fn parse_cpe(s: &str, path: &str) -> Result<Cpe, SbomError> {
    Cpe::parse(s).map_err(|e| invalid(path, e.to_string()))
}

fn push(out: &mut Vec<Component>, c: Component, limits: &Limits) -> Result<(), SbomError> {
    if out.len() >= limits.max_components {
        return Err(SbomError::TooManyComponents {
            limit: limits.max_components,
        });
    }
    out.push(c);
    Ok(())
}

// ---------------------------------------------------------------- CycloneDX

fn list<'a>(v: &'a Value, key: &str, path: &str) -> Result<Vec<(usize, &'a Value)>, SbomError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().enumerate().collect()),
        Some(_) => Err(invalid(&format!("{path}.{key}"), "expected an array")),
    }
}

const CDX_SUPPORTED: &str = "1.2, 1.3, 1.4, 1.5, 1.6";

fn cyclonedx(doc: &Value, limits: &Limits) -> Result<Sbom, SbomError> {
    let spec = str_field(doc, "specVersion", "$")?
        .ok_or_else(|| invalid("$.specVersion", "missing"))?
        .to_owned();
    if !matches!(spec.as_str(), "1.2" | "1.3" | "1.4" | "1.5" | "1.6") {
        return Err(SbomError::UnsupportedVersion {
            format: "CycloneDX",
            version: spec,
            supported: CDX_SUPPORTED,
        });
    }
    let mut out = Vec::new();
    // (value, path, depth): an explicit stack, so a hostile document cannot
    // exhaust ours.
    let mut stack: Vec<(&Value, String, usize)> = Vec::new();
    if let Some(meta) = doc.get("metadata").and_then(|m| m.get("component")) {
        stack.push((meta, "metadata.component".into(), 0));
    }
    for (k, c) in list(doc, "components", "$")?.into_iter().rev() {
        stack.push((c, format!("components[{k}]"), 0));
    }
    while let Some((c, path, depth)) = stack.pop() {
        if depth > limits.max_depth {
            return Err(SbomError::TooDeep {
                limit: limits.max_depth,
                path,
            });
        }
        if !c.is_object() {
            return Err(invalid(&path, "a component must be an object"));
        }
        let name = str_field(c, "name", &path)?.unwrap_or_default().to_owned();
        let version = str_field(c, "version", &path)?.map(str::to_owned);
        let group = str_field(c, "group", &path)?;
        let purl = str_field(c, "purl", &path)?
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_purl(s, &format!("{path}.purl")))
            .transpose()?;
        let mut cpes = Vec::new();
        if let Some(cpe) = str_field(c, "cpe", &path)?.filter(|s| !s.trim().is_empty()) {
            cpes.push(parse_cpe(cpe, &format!("{path}.cpe"))?);
        }
        let mut licenses = Vec::new();
        for (k, l) in list(c, "licenses", &path)? {
            let lpath = format!("{path}.licenses[{k}]");
            if let Some(expr) = str_field(l, "expression", &lpath)? {
                licenses.push(expr.to_owned());
            } else if let Some(lic) = l.get("license") {
                let id = str_field(lic, "id", &lpath)?;
                let name = str_field(lic, "name", &lpath)?;
                if let Some(s) = id.or(name) {
                    licenses.push(s.to_owned());
                }
            }
        }
        let reference = str_field(c, "bom-ref", &path)?
            .map(str::to_owned)
            .unwrap_or_else(|| path.clone());
        let display_name = match group {
            Some(g) if !g.is_empty() => format!("{g}/{name}"),
            _ => name,
        };
        for (k, child) in list(c, "components", &path)?.into_iter().rev() {
            stack.push((child, format!("{path}.components[{k}]"), depth + 1));
        }
        push(
            &mut out,
            Component {
                reference,
                name: display_name,
                version,
                purl,
                cpes,
                licenses,
                cargo_source: None,
                path,
            },
            limits,
        )?;
    }
    Ok(Sbom {
        format: SbomFormat::CycloneDx,
        spec_version: spec,
        components: out,
    })
}

// ---------------------------------------------------------------- SPDX

fn spdx(doc: &Value, limits: &Limits) -> Result<Sbom, SbomError> {
    let spec = str_field(doc, "spdxVersion", "$")?
        .unwrap_or_default()
        .to_owned();
    if !matches!(spec.as_str(), "SPDX-2.2" | "SPDX-2.3") {
        return Err(SbomError::UnsupportedVersion {
            format: "SPDX",
            version: spec,
            supported: "SPDX-2.2, SPDX-2.3",
        });
    }
    let packages = match doc.get("packages") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(p)) => p.as_slice(),
        Some(_) => return Err(invalid("$.packages", "expected an array")),
    };
    let mut out = Vec::new();
    for (k, p) in packages.iter().enumerate() {
        let path = format!("packages[{k}]");
        if !p.is_object() {
            return Err(invalid(&path, "a package must be an object"));
        }
        let name = str_field(p, "name", &path)?.unwrap_or_default().to_owned();
        let version = str_field(p, "versionInfo", &path)?.map(str::to_owned);
        let mut purl = None;
        let mut cpes = Vec::new();
        if let Some(refs) = p.get("externalRefs") {
            let refs = refs
                .as_array()
                .ok_or_else(|| invalid(&format!("{path}.externalRefs"), "expected an array"))?;
            for (r, ext) in refs.iter().enumerate() {
                let rpath = format!("{path}.externalRefs[{r}]");
                let ty = str_field(ext, "referenceType", &rpath)?.unwrap_or_default();
                let loc = str_field(ext, "referenceLocator", &rpath)?.unwrap_or_default();
                match ty {
                    "purl" if purl.is_none() => {
                        purl = Some(parse_purl(loc, &format!("{rpath}.referenceLocator"))?);
                    }
                    "cpe23Type" | "cpe22Type" => {
                        cpes.push(parse_cpe(loc, &format!("{rpath}.referenceLocator"))?);
                    }
                    _ => {}
                }
            }
        }
        let concluded = str_field(p, "licenseConcluded", &path)?;
        let declared = str_field(p, "licenseDeclared", &path)?;
        let license = match concluded {
            Some(c) if c != "NOASSERTION" => Some(c),
            _ => declared.or(concluded),
        };
        let reference = str_field(p, "SPDXID", &path)?
            .map(str::to_owned)
            .unwrap_or_else(|| path.clone());
        push(
            &mut out,
            Component {
                reference,
                name,
                version,
                purl,
                cpes,
                licenses: license.map(str::to_owned).into_iter().collect(),
                cargo_source: None,
                path,
            },
            limits,
        )?;
    }
    Ok(Sbom {
        format: SbomFormat::Spdx,
        spec_version: spec,
        components: out,
    })
}

// ---------------------------------------------------------------- Cargo.lock

#[derive(Debug, PartialEq, serde::Deserialize)]
struct LockFile {
    version: Option<toml::Value>,
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Cargo writes its lock files in one regular shape: a `version = N` line,
/// then `[[package]]` tables of `key = "string"` lines and `dependencies`
/// arrays of plain strings. Reading that shape line by line takes a tenth of
/// a full TOML parse, which was half of scanning a lock file (BENCHMARKS.md).
/// Anything else (comments aside: escapes, inline tables, `[metadata]`,
/// duplicate or missing keys) returns `None` and the TOML parser reads the
/// file, so the result and the errors are the TOML parser's.
fn lock_fast_path(text: &str) -> Option<LockFile> {
    // Byte tests throughout: a `str` test against a `char` compares through
    // `memcmp`, and those calls were a fifth of reading a large lock file.
    fn strip_last(s: &str, byte: u8) -> Option<&str> {
        (s.as_bytes().last() == Some(&byte)).then(|| s.get(..s.len() - 1))?
    }
    fn strip_first(s: &str, byte: u8) -> Option<&str> {
        (s.as_bytes().first() == Some(&byte)).then(|| s.get(1..))?
    }
    fn plain_string(v: &str) -> Option<&str> {
        let inner = strip_last(strip_first(v, b'"')?, b'"')?;
        (!inner.bytes().any(|b| b == b'"' || b == b'\\')).then_some(inner)
    }
    let mut version = None;
    let mut packages: Vec<LockPackage> = Vec::new();
    let mut current: Option<(Option<String>, Option<String>, Option<String>)> = None;
    let finish = |current: &mut Option<(Option<String>, Option<String>, Option<String>)>,
                  packages: &mut Vec<LockPackage>|
     -> Option<()> {
        if let Some((name, version, source)) = current.take() {
            packages.push(LockPackage {
                name: name?,
                version: version?,
                source,
            });
        }
        Some(())
    };
    // TOML whitespace is ASCII; a line with other whitespace is not the
    // shape Cargo writes and goes to the TOML parser below.
    let mut lines = text.split('\n').map(str::trim_ascii);
    while let Some(line) = lines.next() {
        if line.is_empty() || line.as_bytes().first() == Some(&b'#') {
            continue;
        }
        if line == "[[package]]" {
            finish(&mut current, &mut packages)?;
            current = Some((None, None, None));
            continue;
        }
        // Keys are bare words, so the first `=` ends the key (a one-byte
        // search: a `" = "` substring search was a tenth of the parse).
        let (key, value) = line.split_once('=')?;
        let (key, value) = (strip_last(key, b' ')?, strip_first(value, b' ')?);
        let Some(pkg) = current.as_mut() else {
            if key == "version" && version.is_none() && value.bytes().all(|b| b.is_ascii_digit()) {
                version = Some(toml::Value::Integer(value.parse().ok()?));
                continue;
            }
            return None;
        };
        match key {
            "dependencies" => {
                // `[]` on one line, or one plain string per line up to `]`.
                if value != "[]" {
                    if value != "[" {
                        return None;
                    }
                    loop {
                        let item = lines.next()?;
                        if item == "]" {
                            break;
                        }
                        plain_string(strip_last(item, b',').unwrap_or(item))?;
                    }
                }
            }
            "checksum" => {
                plain_string(value)?;
            }
            "name" | "version" | "source" => {
                let slot = match key {
                    "name" => &mut pkg.0,
                    "version" => &mut pkg.1,
                    _ => &mut pkg.2,
                };
                if slot.is_some() {
                    return None;
                }
                *slot = Some(plain_string(value)?.to_owned());
            }
            _ => return None,
        }
    }
    finish(&mut current, &mut packages)?;
    Some(LockFile {
        version,
        package: packages,
    })
}

fn cargo_lock(text: &str, limits: &Limits) -> Result<Sbom, SbomError> {
    let parsed = match lock_fast_path(text) {
        Some(lock) => Ok(lock),
        None => toml::from_str::<LockFile>(text),
    };
    let lock: LockFile = parsed.map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_col(text.as_bytes(), s.start))
            .unwrap_or((0, 0));
        SbomError::Syntax {
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    if lock.package.is_empty() && lock.version.is_none() {
        return Err(SbomError::UnknownFormat);
    }
    let spec = match &lock.version {
        None => "1-2".to_owned(),
        Some(toml::Value::Integer(v @ 1..=4)) => v.to_string(),
        Some(other) => {
            return Err(SbomError::UnsupportedVersion {
                format: "Cargo.lock",
                version: other.to_string(),
                supported: "1, 2, 3, 4",
            });
        }
    };
    let mut out = Vec::new();
    for (k, p) in lock.package.into_iter().enumerate() {
        let path = format!("package[{k}]");
        let purl = Purl {
            ty: "cargo".into(),
            namespace: None,
            name: p.name.clone(),
            version: Some(p.version.clone()),
            qualifiers: Default::default(),
            subpath: None,
        };
        if p.name.is_empty() {
            return Err(invalid(&path, "empty package name"));
        }
        push(
            &mut out,
            Component {
                reference: format!("{}@{}", p.name, p.version),
                name: p.name,
                version: Some(p.version),
                purl: Some(purl),
                cpes: Vec::new(),
                licenses: Vec::new(),
                cargo_source: p.source,
                path,
            },
            limits,
        )?;
    }
    Ok(Sbom {
        format: SbomFormat::CargoLock,
        spec_version: spec,
        components: out,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn both(text: &str) -> (Option<LockFile>, LockFile) {
        (lock_fast_path(text), toml::from_str(text).unwrap())
    }

    #[test]
    fn the_fast_lock_reader_agrees_with_toml_or_steps_aside() {
        let plain = "# generated\nversion = 3\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"ab\"\ndependencies = [\n \"b 0.1.0\",\n \"c\",\n]\n\n[[package]]\nname = \"b\"\nversion = \"0.1.0\"\ndependencies = []\n";
        let (fast, slow) = both(plain);
        assert_eq!(fast.as_ref(), Some(&slow));
        assert_eq!(slow.package.len(), 2);
        // Shapes the line reader does not take: the TOML parser reads them.
        for other in [
            "version = 3\n[[package]]\nname = \"a\\u0062\"\nversion = \"1\"\n",
            "version = 3\n[[package]]\nname = 'a'\nversion = \"1\"\n",
            "[[package]]\nname = \"a\"\nversion = \"1\"\n[metadata]\n\"checksum a 1\" = \"x\"\n",
            "[[package]]\nname = \"a\"\nversion = \"1\"\nreplace = \"b\"\n",
            "[[package]]\nname=\"a\"\nversion = \"1\"\n",
        ] {
            assert_eq!(lock_fast_path(other), None, "{other}");
            toml::from_str::<LockFile>(other).unwrap();
        }
        // Broken files are left to the TOML parser and its error position.
        for broken in [
            "[[package]]\nname = \"a\"\n",
            "[[package]]\nname = \"a\"\nname = \"b\"\nversion = \"1\"\n",
            "[[package]]\nname = \"a\"\nversion = \"1\"\ndependencies = [\n \"b\",\n",
        ] {
            assert_eq!(lock_fast_path(broken), None, "{broken}");
            assert!(toml::from_str::<LockFile>(broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn corpus_lock_files_take_the_fast_path_with_the_toml_answer() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/sbom-corpus");
        if !base.is_dir() {
            eprintln!("SKIPPED: ../shared/data is not present");
            return;
        }
        let mut checked = 0;
        for group in ["cargo-real", "cargo-synthetic"] {
            for entry in std::fs::read_dir(base.join(group)).unwrap() {
                let lock = entry.unwrap().path().join("Cargo.lock");
                let Ok(text) = std::fs::read_to_string(&lock) else {
                    continue;
                };
                let slow: LockFile = toml::from_str(&text).unwrap();
                match lock_fast_path(&text) {
                    Some(fast) => {
                        assert_eq!(fast, slow, "{}", lock.display());
                        checked += 1;
                    }
                    None => eprintln!("{}: TOML parser", lock.display()),
                }
            }
        }
        assert!(
            checked >= 10,
            "only {checked} lock files took the fast path"
        );
    }
}
