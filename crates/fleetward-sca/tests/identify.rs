//! purl and CPE parsing and normalisation, per the purl specification's
//! rules for each type.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleetward_sca::purl::{Cpe, Purl};

fn check(input: &str, canonical: &str, key: Option<(&str, &str)>) {
    let p = Purl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(p.to_string(), canonical, "{input}");
    assert_eq!(
        p.osv_key().map(|(e, n)| (e.to_owned(), n)),
        key.map(|(e, n)| (e.to_owned(), n.to_owned())),
        "{input}"
    );
    // Canonical forms are fixed points.
    assert_eq!(Purl::parse(canonical).unwrap(), p, "{canonical}");
}

#[test]
fn purls_normalise() {
    check(
        "pkg:cargo/smallvec@1.6.0",
        "pkg:cargo/smallvec@1.6.0",
        Some(("crates.io", "smallvec")),
    );
    check(
        "PKG:Cargo/Inflector@0.11.4",
        "pkg:cargo/Inflector@0.11.4",
        Some(("crates.io", "Inflector")),
    );
    check(
        "pkg:PyPI/PyYAML@5.3",
        "pkg:pypi/pyyaml@5.3",
        Some(("PyPI", "pyyaml")),
    );
    check(
        "pkg:pypi/Django_REST.framework@3.0",
        "pkg:pypi/django-rest-framework@3.0",
        Some(("PyPI", "django-rest-framework")),
    );
    check(
        "pkg:npm/%40Angular/Core@1.0.0",
        "pkg:npm/%40angular/core@1.0.0",
        Some(("npm", "@angular/core")),
    );
    check(
        "pkg:npm/@babel/core@7.0.0",
        "pkg:npm/%40babel/core@7.0.0",
        Some(("npm", "@babel/core")),
    );
    check(
        "pkg:golang/github.com/gorilla/context@v1.1.1",
        "pkg:golang/github.com/gorilla/context@v1.1.1",
        Some(("Go", "github.com/gorilla/context")),
    );
    check(
        "pkg:deb/debian/curl@7.64.0-4%2Bdeb10u2?arch=amd64&distro=buster",
        "pkg:deb/debian/curl@7.64.0-4%2Bdeb10u2?arch=amd64&distro=buster",
        Some(("Debian", "curl")),
    );
    check(
        "pkg:apk/alpine/OpenSSL@1.1.1d-r0?arch=x86_64",
        "pkg:apk/alpine/openssl@1.1.1d-r0?arch=x86_64",
        Some(("Alpine", "openssl")),
    );
    check(
        "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
        "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
        Some(("Maven", "org.apache.logging.log4j:log4j-core")),
    );
    check(
        "pkg:generic/curl@7.66.0",
        "pkg:generic/curl@7.66.0",
        Some(("generic", "curl")),
    );
    // Qualifiers: keys lower case, sorted, empty values dropped, values decoded.
    check(
        "pkg:generic/libubox@2019-12-28?VCS_URL=git%2Bhttps://git.openwrt.org/project/libubox.git%40d716ac4b&empty=",
        "pkg:generic/libubox@2019-12-28?vcs_url=git+https://git.openwrt.org/project/libubox.git%40d716ac4b",
        Some(("generic", "libubox")),
    );
    // Subpath: '.' and '..' segments dropped.
    check(
        "pkg:golang/google.golang.org/genproto#googleapis/api/../annotations",
        "pkg:golang/google.golang.org/genproto#googleapis/api/annotations",
        Some(("Go", "google.golang.org/genproto")),
    );
    check(
        "pkg:docker/library/debian@sha256%3A244fd47e07d10",
        "pkg:docker/library/debian@sha256:244fd47e07d10",
        None,
    );
}

#[test]
fn bad_purls_are_refused_with_a_reason() {
    for (input, reason) in [
        ("", "does not start with pkg:"),
        ("cargo/smallvec@1.0", "does not start with pkg:"),
        ("pkg:smallvec", "no type/name"),
        ("pkg:1cargo/x", "invalid type"),
        ("pkg:cargo/", "no name"),
        ("pkg:cargo/x?novalue", "qualifier without ="),
        ("pkg:cargo/%FF%FE@1", "percent-encoding is not UTF-8"),
    ] {
        let err = Purl::parse(input).expect_err(input);
        assert_eq!(err.reason, reason, "{input}");
    }
    assert!(Purl::parse(&format!("pkg:cargo/{}", "a".repeat(5000))).is_err());
}

#[test]
fn cpes() {
    let c = Cpe::parse("cpe:2.3:a:haxx:curl:7.66.0:*:*:*:*:*:*:*").unwrap();
    assert_eq!(
        (
            c.part.as_str(),
            c.vendor.as_str(),
            c.product.as_str(),
            c.version.as_deref()
        ),
        ("a", "haxx", "curl", Some("7.66.0"))
    );
    let c = Cpe::parse("cpe:2.3:o:linux:linux_kernel:-:*:*:*:*:*:*:*").unwrap();
    assert_eq!(c.version, None);
    let c =
        Cpe::parse("cpe:2.3:a:dropbear_ssh_project:dropbear\\:ssh:2019.78:*:*:*:*:*:*:*").unwrap();
    assert_eq!(c.product, "dropbear:ssh");
    let c = Cpe::parse("cpe:/a:openssl:openssl:1.1.1d").unwrap();
    assert_eq!(
        (c.product.as_str(), c.version.as_deref()),
        ("openssl", Some("1.1.1d"))
    );
    for bad in ["", "cpe:2.3:x:a:b:1", "cpe:2.3:a::", "cpe:/a:vendor"] {
        assert!(Cpe::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn canonical_forms_parse_back_to_themselves() {
    for input in [
        "pkg:generic/a%2Fb/c%2F/d@1%2F2#x/%2E%2E/y",
        "pkg:npm/scope/name@1",
        "pkg:generic/%25name@%40v?k=a%26b%3Dc%23d",
        "pkg:golang/A/B/C@v1",
        "pkg:generic/ns%2F%2F/n",
    ] {
        let p = Purl::parse(input).unwrap();
        let canonical = p.to_string();
        assert_eq!(
            Purl::parse(&canonical).unwrap(),
            p,
            "{input} -> {canonical}"
        );
    }
    assert!(
        Purl::parse("pkg:pypi/-._").is_err(),
        "a PyPI name that normalises to nothing"
    );
}

/// Index keys: the ecosystem without its release, lower case; the name as
/// its ecosystem compares names (PEP 503 for PyPI, lower case where names
/// are case-insensitive, unchanged where case matters).
#[test]
fn index_keys_normalise_as_each_ecosystem_compares_names() {
    fn check(ecosystem: &str, name: &str, key: &str) {
        let got = fleetward_sca::advisory::index_key(ecosystem, name);
        assert_eq!(got, key.replace('|', "\u{1f}"), "{ecosystem} {name}");
    }
    check("crates.io", "Inflector", "crates.io|Inflector");
    check(
        "PyPI",
        "Django_REST.framework",
        "pypi|django-rest-framework",
    );
    check("Debian:11", "OpenSSL", "debian|openssl");
    check(" Alpine:v3.18 ", "Busybox", "alpine|busybox");
    check("npm", "@Scope/Pkg", "npm|@scope/pkg");
    check("Go", "github.com/Foo/Bar", "go|github.com/foo/bar");
    check("generic", "ΣΟΦΊΑ", "generic|σοφία");
    check("Maven", "org.Apache:Commons", "maven|org.Apache:Commons");
}
