//! Package URLs (purl) and CPE names: how a component says what it is.
//!
//! Advisories are keyed by ecosystem and package name, so two spellings of
//! one package (`pkg:PyPI/PyYAML`, `pkg:pypi/pyyaml`) must become one key or
//! the scan silently misses it. [`Purl::parse`] normalises as the purl
//! specification says: the type is lower case, every component is
//! percent-decoded, qualifiers are sorted with lower-case keys and empty
//! values dropped, and each type's own name rules apply (PyPI names are
//! PEP 503-normalised, npm/GitHub/Debian/apk names are lower case).

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Why a purl or CPE was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct IdError {
    pub what: &'static str,
    pub input: String,
    pub reason: &'static str,
}

/// A normalised package URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Purl {
    pub ty: String,
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
    pub subpath: Option<String>,
}

const MAX_LEN: usize = 4096;

fn decode(s: &str, input: &str) -> Result<String, IdError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| IdError {
            what: "purl",
            input: input.chars().take(120).collect(),
            reason: "percent-encoding is not UTF-8",
        })
}

/// Decodes `/`-separated segments, splits decoded ones again and drops
/// empty segments.
fn segments(s: &str, input: &str) -> Result<Vec<String>, IdError> {
    let mut out = Vec::new();
    for raw in s.split('/').filter(|p| !p.is_empty()) {
        for part in decode(raw, input)?.split('/') {
            if !part.is_empty() {
                out.push(part.to_owned());
            }
        }
    }
    Ok(out)
}

/// PEP 503: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

impl Purl {
    pub fn parse(input: &str) -> Result<Purl, IdError> {
        let bad = |reason| IdError {
            what: "purl",
            input: input.chars().take(120).collect(),
            reason,
        };
        if input.len() > MAX_LEN {
            return Err(bad("longer than 4096 bytes"));
        }
        let s = input.trim();
        let rest = s
            .strip_prefix("pkg:")
            .or_else(|| s.strip_prefix("PKG:"))
            .ok_or_else(|| bad("does not start with pkg:"))?;
        let rest = rest.trim_start_matches('/');
        let (rest, subpath) = match rest.split_once('#') {
            Some((r, sp)) => {
                let segs = segments(sp, input)?;
                let segs: Vec<String> =
                    segs.into_iter().filter(|p| p != "." && p != "..").collect();
                (r, (!segs.is_empty()).then(|| segs.join("/")))
            }
            None => (rest, None),
        };
        let (rest, qualifiers) = match rest.split_once('?') {
            Some((r, q)) => {
                let mut map = BTreeMap::new();
                for pair in q.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| bad("qualifier without ="))?;
                    let k = k.to_ascii_lowercase();
                    if k.is_empty()
                        || !k
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c))
                    {
                        return Err(bad("invalid qualifier key"));
                    }
                    let v = decode(v, input)?;
                    if !v.is_empty() {
                        map.insert(k, v);
                    }
                }
                (r, map)
            }
            None => (rest, BTreeMap::new()),
        };
        let (ty, rest) = rest.split_once('/').ok_or_else(|| bad("no type/name"))?;
        let ty = ty.to_ascii_lowercase();
        if ty.is_empty()
            || !ty.as_bytes()[0].is_ascii_alphabetic()
            || !ty
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".+-".contains(&c))
        {
            return Err(bad("invalid type"));
        }
        let rest = rest.trim_end_matches('/');
        // The version is after the last '@' of the path (a namespace may hold
        // an encoded '@', as npm scopes do: %40scope).
        let (path, version) = match rest.rfind('@') {
            Some(at) if !rest[at..].contains('/') => {
                let v = decode(&rest[at + 1..], input)?;
                (&rest[..at], (!v.is_empty()).then_some(v))
            }
            _ => (rest, None),
        };
        // The name is the last raw segment (it may contain an encoded '/');
        // namespace segments are decoded and re-split so that the canonical
        // form parses back to the same value.
        let mut raw: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let name = decode(raw.pop().ok_or_else(|| bad("no name"))?, input)?;
        let segs = segments(&raw.join("/"), input)?;
        if name.is_empty() {
            return Err(bad("no name"));
        }
        let namespace = (!segs.is_empty()).then(|| segs.join("/"));
        let mut purl = Purl {
            ty,
            namespace,
            name,
            version,
            qualifiers,
            subpath,
        };
        purl.normalise_type_rules();
        if purl.name.is_empty() {
            return Err(bad("no name"));
        }
        Ok(purl)
    }

    fn normalise_type_rules(&mut self) {
        let lower_ns = |p: &mut Purl| {
            if let Some(ns) = &mut p.namespace {
                *ns = ns.to_lowercase();
            }
        };
        match self.ty.as_str() {
            "pypi" => self.name = pep503(&self.name),
            "npm" | "github" | "bitbucket" | "deb" | "apk" | "alpm" | "golang" | "hex"
            | "composer" => {
                lower_ns(self);
                self.name = self.name.to_lowercase();
            }
            "pub" => self.name = self.name.to_lowercase(),
            _ => {}
        }
        if self.ty == "npm"
            && let Some(ns) = &mut self.namespace
            && !ns.starts_with('@')
        {
            ns.insert(0, '@');
        }
    }

    /// The OSV ecosystem and package name advisories use for this purl, or
    /// `None` for types no advisory source keys by name.
    pub fn osv_key(&self) -> Option<(&'static str, String)> {
        let joined = || match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        };
        Some(match self.ty.as_str() {
            "cargo" => ("crates.io", self.name.clone()),
            "npm" => ("npm", joined()),
            "golang" => ("Go", joined()),
            "pypi" => ("PyPI", self.name.clone()),
            "maven" => (
                "Maven",
                match &self.namespace {
                    Some(ns) => format!("{ns}:{}", self.name),
                    None => self.name.clone(),
                },
            ),
            "gem" => ("RubyGems", self.name.clone()),
            "nuget" => ("NuGet", self.name.clone()),
            "hackage" => ("Hackage", self.name.clone()),
            "composer" => ("Packagist", joined()),
            "hex" => ("Hex", self.name.clone()),
            "pub" => ("Pub", self.name.clone()),
            "deb" => (
                match self.namespace.as_deref() {
                    Some("ubuntu") => "Ubuntu",
                    _ => "Debian",
                },
                self.name.clone(),
            ),
            "apk" => ("Alpine", self.name.clone()),
            "rpm" => (
                match self.namespace.as_deref() {
                    Some("almalinux") => "AlmaLinux",
                    Some("rocky") => "Rocky Linux",
                    _ => "Red Hat",
                },
                self.name.clone(),
            ),
            "generic" => ("generic", self.name.to_lowercase()),
            _ => return None,
        })
    }
}

impl serde::Serialize for Purl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Characters percent-encoded in purl components.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'&')
    .add(b'+')
    .add(b'=');
const NAMESPACE: &AsciiSet = &COMPONENT.remove(b'/');
const QUALIFIER: &AsciiSet = &COMPONENT.remove(b'/').remove(b'+');

impl fmt::Display for Purl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkg:{}/", self.ty)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{}/", utf8_percent_encode(ns, NAMESPACE))?;
        }
        write!(f, "{}", utf8_percent_encode(&self.name, COMPONENT))?;
        if let Some(v) = &self.version {
            write!(f, "@{}", utf8_percent_encode(v, COMPONENT))?;
        }
        for (k, (key, value)) in self.qualifiers.iter().enumerate() {
            let sep = if k == 0 { '?' } else { '&' };
            write!(f, "{sep}{key}={}", utf8_percent_encode(value, QUALIFIER))?;
        }
        if let Some(sp) = &self.subpath {
            write!(f, "#{}", utf8_percent_encode(sp, NAMESPACE))?;
        }
        Ok(())
    }
}

/// The parts of a CPE name (2.3 formatted string or 2.2 URI) a scan uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Cpe {
    pub part: String,
    pub vendor: String,
    pub product: String,
    /// `None` for `*` / `-` (any / not applicable).
    pub version: Option<String>,
}

impl Cpe {
    pub fn parse(input: &str) -> Result<Cpe, IdError> {
        let bad = |reason| IdError {
            what: "CPE",
            input: input.chars().take(120).collect(),
            reason,
        };
        if input.len() > MAX_LEN {
            return Err(bad("longer than 4096 bytes"));
        }
        let s = input.trim();
        let fields: Vec<String> = if let Some(rest) = s.strip_prefix("cpe:2.3:") {
            split_cpe23(rest)
        } else if let Some(rest) = s.strip_prefix("cpe:/") {
            rest.split(':')
                .map(|f| decode(f, input).unwrap_or_else(|_| f.to_owned()))
                .collect()
        } else {
            return Err(bad("does not start with cpe:2.3: or cpe:/"));
        };
        let field = |k: usize| fields.get(k).cloned().unwrap_or_default();
        let part = field(0).to_ascii_lowercase();
        if !matches!(part.as_str(), "a" | "o" | "h") {
            return Err(bad("part is not a, o or h"));
        }
        let vendor = field(1).to_lowercase();
        let product = field(2).to_lowercase();
        if vendor.is_empty() || product.is_empty() || product == "*" {
            return Err(bad("no vendor or product"));
        }
        let version = Some(field(3)).filter(|v| !v.is_empty() && v != "*" && v != "-");
        Ok(Cpe {
            part,
            vendor,
            product,
            version,
        })
    }
}

/// Splits on unescaped `:` and removes the `\` escapes.
fn split_cpe23(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ':' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}
