//! The binary encoding of index entries.
//!
//! A scan of a large SBOM decodes thousands of entries, and with JSON that
//! decoding was most of the scan (BENCHMARKS.md, "SBOM security gate"): every
//! key is matched by name, every string escaped and copied. Entries are
//! written once by [`crate::import`] and read many times, so they use a
//! fixed field order with length prefixes instead: no field names, no
//! escapes, strings copied straight out of the entry.
//!
//! Layout (integers are LEB128 varints, at most 10 bytes):
//!
//! ```text
//! entry     = count advisory*
//! advisory  = str(id) strs(aliases) str(summary) opt(published) opt(modified)
//!             opt(withdrawn) strs(cvss) opt(source_severity) opt(informational)
//!             count affected*
//! affected  = str(ecosystem) str(name) count range* versions opt-rustsec strs(os)
//! range     = u8(kind: 0 SEMVER, 1 ECOSYSTEM, 2 GIT) count event*
//! event     = u8(0 introduced, 1 fixed, 2 last_affected, 3 limit) str
//! versions  = str (the sorted list, one block; see VersionList)
//! opt-rustsec = u8(0) | u8(1) strs(patched) strs(unaffected)
//! opt       = u8(0) | u8(1) str
//! strs      = count str*
//! str       = varint(length) UTF-8 bytes
//! ```
//!
//! The file can be damaged or hostile like any other input: every length
//! and count is checked against the bytes that remain before anything is
//! allocated, so a corrupt entry is an error, never a panic or a huge
//! allocation.

use fleetward_sca::advisory::{
    Advisory, Affected, Event, Range, RangeKind, RustSecVersions, VersionList,
};

/// Appends the encoding of `list` to `out`.
pub fn encode(list: &[&Advisory], out: &mut Vec<u8>) {
    put_len(out, list.len());
    for adv in list {
        put_str(out, &adv.id);
        put_strs(out, &adv.aliases);
        put_str(out, &adv.summary);
        put_opt(out, adv.published.as_deref());
        put_opt(out, adv.modified.as_deref());
        put_opt(out, adv.withdrawn.as_deref());
        put_strs(out, &adv.cvss);
        put_opt(out, adv.source_severity.as_deref());
        put_opt(out, adv.informational.as_deref());
        put_len(out, adv.affected.len());
        for aff in &adv.affected {
            put_str(out, &aff.ecosystem);
            put_str(out, &aff.name);
            put_len(out, aff.ranges.len());
            for range in &aff.ranges {
                out.push(match range.kind {
                    RangeKind::Semver => 0,
                    RangeKind::Ecosystem => 1,
                    RangeKind::Git => 2,
                });
                put_len(out, range.events.len());
                for event in &range.events {
                    let (tag, v) = match event {
                        Event::Introduced(v) => (0, v),
                        Event::Fixed(v) => (1, v),
                        Event::LastAffected(v) => (2, v),
                        Event::Limit(v) => (3, v),
                    };
                    out.push(tag);
                    put_str(out, v);
                }
            }
            put_str(out, aff.versions.as_block());
            match &aff.rustsec {
                None => out.push(0),
                Some(rs) => {
                    out.push(1);
                    put_strs(out, &rs.patched);
                    put_strs(out, &rs.unaffected);
                }
            }
            put_strs(out, &aff.os);
        }
    }
}

/// Decodes one entry; the error says what was wrong and where.
pub fn decode(bytes: &[u8]) -> Result<Vec<Advisory>, String> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let list = r.advisories()?;
    if r.pos != bytes.len() {
        return Err(format!(
            "{} bytes left over after the entry",
            bytes.len() - r.pos
        ));
    }
    Ok(list)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_strs(out: &mut Vec<u8>, list: &[String]) {
    put_len(out, list.len());
    for s in list {
        put_str(out, s);
    }
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.pos))
    }

    fn byte(&mut self) -> Result<u8, String> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.fail("unexpected end"),
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return self.fail("integer overflow");
            }
            value |= part << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.fail("integer too long")
    }

    /// A count of items that take at least one byte each: never more than
    /// the bytes left, so a corrupt count cannot reserve gigabytes.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return self.fail(&format!("count {n} exceeds the {left} bytes left"));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<String, String> {
        let len = self.count()?;
        let bytes = self.buf.get(self.pos..self.pos + len).unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.pos += len;
                Ok(s.to_owned())
            }
            Err(_) => self.fail("string is not UTF-8"),
        }
    }

    fn strs(&mut self) -> Result<Vec<String>, String> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.str()?);
        }
        Ok(out)
    }

    fn opt(&mut self) -> Result<Option<String>, String> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => self.fail("bad option tag"),
        }
    }

    fn advisories(&mut self) -> Result<Vec<Advisory>, String> {
        let n = self.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(self.advisory()?);
        }
        Ok(list)
    }

    fn advisory(&mut self) -> Result<Advisory, String> {
        let id = self.str()?;
        let aliases = self.strs()?;
        let summary = self.str()?;
        let published = self.opt()?;
        let modified = self.opt()?;
        let withdrawn = self.opt()?;
        let cvss = self.strs()?;
        let source_severity = self.opt()?;
        let informational = self.opt()?;
        let n = self.count()?;
        let mut affected = Vec::with_capacity(n);
        for _ in 0..n {
            affected.push(self.affected()?);
        }
        Ok(Advisory {
            id,
            aliases,
            summary,
            published,
            modified,
            withdrawn,
            cvss,
            source_severity,
            informational,
            affected,
        })
    }

    fn affected(&mut self) -> Result<Affected, String> {
        let ecosystem = self.str()?;
        let name = self.str()?;
        let n = self.count()?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = match self.byte()? {
                0 => RangeKind::Semver,
                1 => RangeKind::Ecosystem,
                2 => RangeKind::Git,
                _ => return self.fail("bad range kind"),
            };
            let m = self.count()?;
            let mut events = Vec::with_capacity(m);
            for _ in 0..m {
                let tag = self.byte()?;
                let v = self.str()?;
                events.push(match tag {
                    0 => Event::Introduced(v),
                    1 => Event::Fixed(v),
                    2 => Event::LastAffected(v),
                    3 => Event::Limit(v),
                    _ => return self.fail("bad event kind"),
                });
            }
            ranges.push(Range { kind, events });
        }
        let versions = VersionList::from_block(self.str()?);
        let rustsec = match self.byte()? {
            0 => None,
            1 => Some(RustSecVersions {
                patched: self.strs()?,
                unaffected: self.strs()?,
            }),
            _ => return self.fail("bad option tag"),
        };
        let os = self.strs()?;
        Ok(Affected {
            ecosystem,
            name,
            ranges,
            versions,
            rustsec,
            os,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Advisory {
        Advisory {
            id: "PYSEC-2099-1".into(),
            aliases: vec!["CVE-2099-1".into(), "GHSA-xxxx-yyyy-zzzz".into()],
            summary: "an ünïcode summary\nwith a newline".into(),
            published: Some("2099-01-01T00:00:00Z".into()),
            modified: None,
            withdrawn: None,
            cvss: vec!["CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into()],
            source_severity: Some("HIGH".into()),
            informational: None,
            affected: vec![
                Affected {
                    ecosystem: "PyPI".into(),
                    name: "Some_Package".into(),
                    ranges: vec![Range {
                        kind: RangeKind::Ecosystem,
                        events: vec![
                            Event::Introduced("0".into()),
                            Event::Fixed("1.2".into()),
                            Event::LastAffected("1.1.9".into()),
                            Event::Limit("*".into()),
                        ],
                    }],
                    versions: VersionList::new(vec!["1.0".into(), "0.9".into(), "1.1".into()])
                        .unwrap(),
                    rustsec: None,
                    os: vec![],
                },
                Affected {
                    ecosystem: "crates.io".into(),
                    name: "x".into(),
                    ranges: vec![Range {
                        kind: RangeKind::Git,
                        events: vec![],
                    }],
                    versions: VersionList::default(),
                    rustsec: Some(RustSecVersions {
                        patched: vec![">= 1.2".into()],
                        unaffected: vec!["< 0.1".into()],
                    }),
                    os: vec!["linux".into()],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let adv = sample();
        let mut withdrawn = sample();
        withdrawn.id = "W".into();
        withdrawn.withdrawn = Some("2099-02-02T00:00:00Z".into());
        withdrawn.informational = Some("unmaintained".into());
        let mut out = Vec::new();
        encode(&[&adv, &withdrawn], &mut out);
        assert_eq!(decode(&out).unwrap(), vec![adv, withdrawn]);
        let mut empty = Vec::new();
        encode(&[], &mut empty);
        assert_eq!(decode(&empty).unwrap(), Vec::<Advisory>::new());
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, u32::MAX as usize] {
            let mut out = Vec::new();
            put_len(&mut out, n);
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.varint().unwrap(), n as u64, "{n}");
            assert_eq!(r.pos, out.len());
        }
    }

    #[test]
    fn every_truncation_and_bad_byte_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        encode(&[&sample()], &mut out);
        for end in 0..out.len() {
            assert!(decode(&out[..end]).is_err(), "truncated at {end}");
        }
        // Flipping any byte must never panic; most flips are errors.
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
        let mut extra = out.clone();
        extra.push(0);
        assert!(decode(&extra).unwrap_err().contains("left over"));
    }

    #[test]
    fn corrupt_counts_and_strings_are_refused() {
        let check = |bytes: &[u8], expected: &str| {
            let err = decode(bytes).unwrap_err();
            assert!(err.contains(expected), "{bytes:?}: {err}");
        };
        // A count far beyond the bytes that follow.
        check(&[0xff, 0xff, 0xff, 0xff, 0x0f], "exceeds");
        // A varint longer than 64 bits.
        check(&[0xff; 11], "integer");
        // One advisory whose id is not UTF-8.
        check(&[1, 2, 0xc3, 0x28], "not UTF-8");
        // A bad option tag (published = 7).
        check(&[1, 1, b'x', 0, 0, 7], "bad option tag");
    }
}
