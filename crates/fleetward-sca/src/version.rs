//! Version ordering per ecosystem.
//!
//! An advisory says "affected from 1.2.0, fixed in 1.2.7"; whether 1.2.7~rc1 or
//! 1.2.7.dev0 is in that range depends on the ecosystem's own rules, and
//! getting them wrong either hides a vulnerability or invents one. Each
//! [`Scheme`] implements its ecosystem's specification (semver 2.0, PEP 440,
//! dpkg, apk, rpm) rather than one "close enough" comparison.

use std::cmp::Ordering;

/// A version string that its scheme cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    pub scheme: &'static str,
    pub version: String,
    pub reason: String,
}

/// How an ecosystem orders its versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Semantic Versioning 2.0 (crates.io, npm, OSV `SEMVER` ranges). Build
    /// metadata does not take part in precedence.
    Semver,
    /// Go modules: semver with a mandatory-in-practice `v` prefix.
    Go,
    /// PEP 440 (PyPI).
    Pep440,
    /// dpkg (Debian, Ubuntu): epoch, upstream, revision, `~` before anything.
    Debian,
    /// apk (Alpine): `1.2.3a_rc1-r2`.
    Alpine,
    /// rpm (Red Hat, AlmaLinux, Rocky, openSUSE): epoch, rpmvercmp, `~` and `^`.
    Rpm,
    /// Anything else: numeric and alphabetic runs, numbers compared as numbers.
    Generic,
}

impl Scheme {
    /// The scheme an OSV ecosystem name (`Debian:11`, `PyPI`, `crates.io`)
    /// uses for `ECOSYSTEM` ranges.
    pub fn for_ecosystem(ecosystem: &str) -> Scheme {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base.to_ascii_lowercase().as_str() {
            "crates.io" | "cargo" | "npm" | "hex" | "pub" | "swifturl" => Scheme::Semver,
            "go" | "golang" => Scheme::Go,
            "pypi" => Scheme::Pep440,
            "debian" | "ubuntu" => Scheme::Debian,
            "alpine" | "wolfi" | "chainguard" => Scheme::Alpine,
            "almalinux" | "rocky linux" | "red hat" | "redhat" | "opensuse" | "suse" | "mageia"
            | "openeuler" => Scheme::Rpm,
            _ => Scheme::Generic,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Semver => "semver",
            Scheme::Go => "go",
            Scheme::Pep440 => "pep440",
            Scheme::Debian => "debian",
            Scheme::Alpine => "alpine",
            Scheme::Rpm => "rpm",
            Scheme::Generic => "generic",
        }
    }

    /// Orders `a` against `b`.
    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        match self {
            Scheme::Semver => Ok(semver_parse(self, a)?.cmp_precedence(&semver_parse(self, b)?)),
            Scheme::Go => Ok(
                semver_parse(self, strip_v(a))?.cmp_precedence(&semver_parse(self, strip_v(b))?)
            ),
            Scheme::Pep440 => Ok(Pep440::parse(a)?.cmp(&Pep440::parse(b)?)),
            Scheme::Debian => Ok(Debian::parse(a)?.cmp(&Debian::parse(b)?)),
            Scheme::Alpine => Ok(Alpine::parse(a)?.cmp(&Alpine::parse(b)?)),
            Scheme::Rpm => Ok(rpm_compare(a, b)),
            Scheme::Generic => Ok(generic_compare(a, b)),
        }
    }

    /// Reads `v` once, for comparing it with many others
    /// ([`Scheme::compare_parsed`]); `compare` parses both sides every time,
    /// which was most of checking a long list of range events.
    pub fn parse(self, v: &str) -> Result<Parsed<'_>, VersionError> {
        Ok(match self {
            Scheme::Semver => Parsed::Semver(semver_parse(self, v)?),
            Scheme::Go => Parsed::Semver(semver_parse(self, strip_v(v))?),
            Scheme::Pep440 => Parsed::Pep440(Pep440::parse(v)?),
            Scheme::Debian => Parsed::Debian(Debian::parse(v)?),
            Scheme::Alpine => Parsed::Alpine(Alpine::parse(v)?),
            Scheme::Rpm | Scheme::Generic => Parsed::Raw(v),
        })
    }

    /// Orders two versions parsed under this scheme, as
    /// [`Scheme::compare`] orders their texts.
    pub fn compare_parsed(self, a: &Parsed<'_>, b: &Parsed<'_>) -> Ordering {
        match (a, b) {
            (Parsed::Semver(a), Parsed::Semver(b)) => a.cmp_precedence(b),
            (Parsed::Pep440(a), Parsed::Pep440(b)) => a.cmp(b),
            (Parsed::Debian(a), Parsed::Debian(b)) => a.cmp(b),
            (Parsed::Alpine(a), Parsed::Alpine(b)) => a.cmp(b),
            (Parsed::Raw(a), Parsed::Raw(b)) if self == Scheme::Rpm => rpm_compare(a, b),
            (Parsed::Raw(a), Parsed::Raw(b)) => generic_compare(a, b),
            // Both sides come from `self.parse`, so the kinds always agree.
            _ => Ordering::Equal,
        }
    }

    /// Whether `v` is readable under this scheme.
    pub fn validate(self, v: &str) -> Result<(), VersionError> {
        self.compare(v, v).map(|_| ())
    }
}

/// A version read under one [`Scheme`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    Semver(semver::Version),
    Pep440(Pep440),
    Debian(Debian),
    Alpine(Alpine),
    /// rpm and generic versions are compared as text.
    Raw(&'a str),
}

fn err(scheme: Scheme, version: &str, reason: impl Into<String>) -> VersionError {
    VersionError {
        scheme: scheme.name(),
        version: version.chars().take(80).collect(),
        reason: reason.into(),
    }
}

fn strip_v(v: &str) -> &str {
    v.strip_prefix('v').unwrap_or(v)
}

/// Strict semver first; then the lenient forms advisories do contain
/// (`1.2`, `7`): missing minor/patch components are zero.
fn semver_parse(scheme: Scheme, v: &str) -> Result<semver::Version, VersionError> {
    let v = v.trim();
    match semver::Version::parse(v) {
        Ok(parsed) => Ok(parsed),
        Err(first) => {
            let split = v.find(['-', '+']).unwrap_or(v.len());
            let (core, rest) = v.split_at(split);
            let parts = core.split('.').count();
            if (1..3).contains(&parts) && core.split('.').all(|p| !p.is_empty()) {
                let padded = format!("{core}{}{rest}", ".0".repeat(3 - parts));
                semver::Version::parse(&padded).map_err(|_| err(scheme, v, first.to_string()))
            } else {
                Err(err(scheme, v, first.to_string()))
            }
        }
    }
}

// ---------------------------------------------------------------- PEP 440

/// A PEP 440 version, with the normalisations the spec allows on input
/// (case, `v` prefix, `alpha`/`c`/`pre`/`preview`, `rev`/`r`, `-N` post
/// releases, implicit zero numbers, `-_.` separators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalSegment {
    // Declared first: alphanumeric segments sort before numeric ones.
    Alpha(String),
    Num(u64),
}

impl Pep440 {
    pub fn parse(input: &str) -> Result<Pep440, VersionError> {
        let e = |why: &str| err(Scheme::Pep440, input, why);
        let lower = input.trim().to_ascii_lowercase();
        let (public, local) = match lower.split_once('+') {
            Some((p, l)) => (p, Some(l)),
            None => (lower.as_str(), None),
        };
        let s = public.strip_prefix('v').unwrap_or(public);
        let b = s.as_bytes();
        let mut i = 0;
        let number = |i: &mut usize| -> Option<u64> {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            if start == *i {
                return None;
            }
            s[start..*i].parse().ok()
        };
        let mut epoch = 0;
        if let Some(bang) = s.find('!') {
            epoch = s[..bang].parse().map_err(|_| e("bad epoch"))?;
            i = bang + 1;
        }
        let mut release = vec![number(&mut i).ok_or_else(|| e("no release number"))?];
        while i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            release.push(number(&mut i).ok_or_else(|| e("bad release segment"))?);
        }
        let sep = |i: &mut usize| {
            if *i < b.len() && matches!(b[*i], b'.' | b'-' | b'_') {
                *i += 1;
            }
        };
        let word = |i: &mut usize| -> &str {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_alphabetic() {
                *i += 1;
            }
            &s[start..*i]
        };
        let (mut pre, mut post, mut dev) = (None, None, None);
        let mut stage = 0; // 0: pre allowed, 1: post allowed, 2: dev allowed
        while i < b.len() {
            let before = i;
            // Implicit post release: "1.0-1".
            if b[i] == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit() && stage <= 1 {
                i += 1;
                post = Some(number(&mut i).ok_or_else(|| e("bad post release"))?);
                stage = 2;
                continue;
            }
            sep(&mut i);
            let w = word(&mut i);
            let kind = match w {
                "a" | "alpha" => (0, 0u8),
                "b" | "beta" => (0, 1),
                "c" | "rc" | "pre" | "preview" => (0, 2),
                "post" | "rev" | "r" => (1, 0),
                "dev" => (2, 0),
                _ => return Err(e("unexpected text")),
            };
            if kind.0 < stage {
                return Err(e("segments out of order"));
            }
            sep(&mut i);
            let n = number(&mut i).unwrap_or(0);
            match kind.0 {
                0 => pre = Some((kind.1, n)),
                1 => post = Some(n),
                _ => dev = Some(n),
            }
            stage = kind.0 + 1;
            if i == before {
                return Err(e("unexpected text"));
            }
        }
        let local = match local {
            None => Vec::new(),
            Some(l) => {
                let mut segs = Vec::new();
                for seg in l.split(['.', '-', '_']) {
                    if seg.is_empty() || !seg.bytes().all(|c| c.is_ascii_alphanumeric()) {
                        return Err(e("bad local version"));
                    }
                    segs.push(match seg.parse::<u64>() {
                        Ok(n) if seg.bytes().all(|c| c.is_ascii_digit()) => LocalSegment::Num(n),
                        _ => LocalSegment::Alpha(seg.to_owned()),
                    });
                }
                segs
            }
        };
        Ok(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// The sort key of `packaging.version`: trailing zeros of the release do
    /// not count; a dev release of a final version sorts before its
    /// pre-releases; no post release sorts before any post release.
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        u64,
        Vec<u64>,
        (i8, u8, u64),
        (i8, u64),
        (i8, u64),
        &[LocalSegment],
    ) {
        let mut release = self.release.clone();
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (-1, 0, 0),
            (None, _, _) => (1, 0, 0),
            (Some((k, n)), _, _) => (0, k, n),
        };
        let post = self.post.map_or((-1, 0), |n| (0, n));
        let dev = self.dev.map_or((1, 0), |n| (0, n));
        (self.epoch, release, pre, post, dev, &self.local)
    }
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ---------------------------------------------------------------- Debian

/// A dpkg version: `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debian {
    epoch: u64,
    upstream: String,
    revision: String,
}

impl Debian {
    pub fn parse(input: &str) -> Result<Debian, VersionError> {
        let e = |why: &str| err(Scheme::Debian, input, why);
        let s = input.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((ep, rest)) => (ep.parse().map_err(|_| e("bad epoch"))?, rest),
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() || !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(e("upstream version must start with a digit"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(ok) || !revision.chars().all(|c| ok(c) && c != '-' && c != ':') {
            return Err(e("invalid character"));
        }
        Ok(Debian {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

impl Ord for Debian {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| dpkg_verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| dpkg_verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Debian {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's `order()`: `~` sorts before everything, even the end of the string;
/// letters before other characters.
fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` (lib/dpkg/version.c).
fn dpkg_verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = dpkg_order(a.get(i).copied());
            let bc = dpkg_order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------- Alpine

/// An apk version: `1.2.3[letter](_suffix[N])*[~hash][-rN]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alpine {
    numbers: Vec<String>,
    letter: Option<u8>,
    suffixes: Vec<(i8, u64)>,
    revision: u64,
}

impl Alpine {
    pub fn parse(input: &str) -> Result<Alpine, VersionError> {
        let e = |why: &str| err(Scheme::Alpine, input, why);
        let s = input.trim();
        let (body, revision) = match s.rsplit_once("-r") {
            Some((body, r)) if !r.is_empty() && r.bytes().all(|c| c.is_ascii_digit()) => {
                (body, r.parse().map_err(|_| e("bad revision"))?)
            }
            _ => (s, 0),
        };
        let body = body.split_once('~').map_or(body, |(b, _)| b);
        let mut parts = body.split('_');
        let head = parts.next().unwrap_or("");
        let mut numbers = Vec::new();
        let mut letter = None;
        for (k, n) in head.split('.').enumerate() {
            let digits: &str = &n[..n.bytes().take_while(u8::is_ascii_digit).count()];
            if digits.is_empty() {
                return Err(e("expected a number"));
            }
            let tail = &n[digits.len()..];
            numbers.push(digits.to_owned());
            if !tail.is_empty() {
                if tail.len() != 1
                    || !tail.as_bytes()[0].is_ascii_lowercase()
                    || k + 1 != head.split('.').count()
                {
                    return Err(e("unexpected text after a number"));
                }
                letter = Some(tail.as_bytes()[0]);
            }
        }
        let mut suffixes = Vec::new();
        for suffix in parts {
            let name_len = suffix.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (name, num) = suffix.split_at(name_len);
            let rank = match name {
                "alpha" => -4,
                "beta" => -3,
                "pre" => -2,
                "rc" => -1,
                "cvs" => 1,
                "svn" => 2,
                "git" => 3,
                "hg" => 4,
                "p" => 5,
                _ => return Err(e("unknown suffix")),
            };
            let num = if num.is_empty() {
                0
            } else {
                num.parse().map_err(|_| e("bad suffix number"))?
            };
            suffixes.push((rank, num));
        }
        Ok(Alpine {
            numbers,
            letter,
            suffixes,
            revision,
        })
    }
}

impl Ord for Alpine {
    fn cmp(&self, other: &Self) -> Ordering {
        for k in 0..self.numbers.len().max(other.numbers.len()) {
            let ord = match (self.numbers.get(k), other.numbers.get(k)) {
                (Some(a), Some(b)) => {
                    // apk compares later components with a leading zero as
                    // decimal fractions ("1.01" < "1.1"), the rest as integers.
                    if k > 0 && (a.starts_with('0') || b.starts_with('0')) {
                        a.as_str().cmp(b.as_str())
                    } else {
                        numeric_str_cmp(a, b)
                    }
                }
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        let ord = self.letter.cmp(&other.letter);
        if ord != Ordering::Equal {
            return ord;
        }
        for k in 0..self.suffixes.len().max(other.suffixes.len()) {
            let a = self.suffixes.get(k).copied().unwrap_or((0, 0));
            let b = other.suffixes.get(k).copied().unwrap_or((0, 0));
            let ord = a.cmp(&b);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.revision.cmp(&other.revision)
    }
}

impl PartialOrd for Alpine {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn numeric_str_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

// ---------------------------------------------------------------- rpm

/// `[epoch:]version[-release]` compared with rpmvercmp on each part.
fn rpm_compare(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (u64, String, String) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((ver, rel)) => (epoch, ver.to_owned(), rel.to_owned()),
            None => (epoch, rest.to_owned(), String::new()),
        }
    };
    let (ea, va, ra) = split(a.trim());
    let (eb, vb, rb) = split(b.trim());
    ea.cmp(&eb).then_with(|| rpmvercmp(&va, &vb)).then_with(|| {
        if ra.is_empty() || rb.is_empty() {
            Ordering::Equal
        } else {
            rpmvercmp(&ra, &rb)
        }
    })
}

/// rpm's `rpmvercmp` (rpmio/rpmvercmp.c).
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let isnum = ca.is_ascii_digit();
        let take = |s: &[u8], k: &mut usize| {
            let start = *k;
            while *k < s.len()
                && (if isnum {
                    s[*k].is_ascii_digit()
                } else {
                    s[*k].is_ascii_alphabetic()
                })
            {
                *k += 1;
            }
            start
        };
        let sa = take(a, &mut i);
        let sb = take(b, &mut j);
        let (seg_a, seg_b) = (&a[sa..i], &b[sb..j]);
        if seg_b.is_empty() {
            return if isnum {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let ord = if isnum {
            let ta = trim_zeros(seg_a);
            let tb = trim_zeros(seg_b);
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            seg_a.cmp(seg_b)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    match (i < a.len(), j < b.len()) {
        (false, false) => Ordering::Equal,
        (true, _) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

// ---------------------------------------------------------------- generic

/// Runs of digits compare as numbers, runs of letters as text, numbers after
/// letters; punctuation only separates. The fallback for ecosystems without
/// a published ordering (and `pkg:generic` components such as C libraries).
fn generic_compare(a: &str, b: &str) -> Ordering {
    rpmvercmp(
        a.trim().trim_start_matches('v'),
        b.trim().trim_start_matches('v'),
    )
}
