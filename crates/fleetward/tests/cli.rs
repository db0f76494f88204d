//! The `fleetward` binary as an operator uses it: `init`, a real `server`
//! process on free ports, the CLI against it, exit codes, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetward");

/// The binary with a clean environment: no `FLEETWARD_*` leaks in from the
/// machine running the tests.
fn fleetward(data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEETWARD_") {
            command.env_remove(key);
        }
    }
    command.arg("--data-dir").arg(data_dir);
    command.stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("running fleetward");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

struct Server {
    child: Child,
    data_dir: PathBuf,
    token: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let (code, out, err) = run(fleetward(data_dir).args(["--json", "init"]));
        assert_eq!(code, 0, "init: {err}");
        let init: Value = serde_json::from_str(&out).unwrap();
        let token = init["admin_token"].as_str().unwrap().to_owned();

        let child = fleetward(data_dir)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--device-listen",
                "127.0.0.1:0",
                "--log",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            data_dir: data_dir.to_owned(),
            token,
        };
        // Startup readiness, not a timing assertion: give up after a generous bound.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !data_dir.join("server.json").exists() {
            assert!(Instant::now() < deadline, "server never wrote server.json");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The CLI, finding the server through `server.json`, with the admin token in the environment.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        run(fleetward(&self.data_dir)
            .env("FLEETWARD_TOKEN", &self.token)
            .args(args))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        self.child
            .wait()
            .unwrap()
            .code()
            .expect("exited, not killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn init_refuses_to_run_twice_and_keeps_the_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = run(fleetward(&data).arg("init"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fwt_"), "prints the admin token: {out}");
    let (code, out, err) = run(fleetward(&data).arg("init"));
    assert_eq!(code, 2, "second init is an error: {out}{err}");
    assert!(err.contains("already"), "says why: {err}");
    assert!(!out.contains("fwt_"), "no second token");
}

#[test]
fn operator_session_over_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));

    let me = server.json(&["whoami"]);
    assert_eq!(me["role"], "admin");

    let (code, _, err) = server.cli(&[
        "device",
        "register",
        "dev-1",
        "--hardware",
        "rev2",
        "--version",
        "1.2.0",
        "--tag",
        "region=eu",
        "--tag",
        "beta",
        "--active",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: String = (2..=30)
        .map(|n| {
            format!(
                "{{\"id\":\"dev-{n}\",\"hardware\":\"rev{}\",\"version\":\"2.0.{n}\",\"tags\":{{\"region\":\"{}\"}}}}\n",
                n % 2 + 1,
                if n % 3 == 0 { "us" } else { "eu" }
            )
        })
        .collect();
    let import = dir.path().join("devices.jsonl");
    std::fs::write(&import, lines).unwrap();
    let (code, _, err) =
        server.cli(&["device", "import", import.to_str().unwrap(), "--batch", "7"]);
    assert_eq!(code, 0, "{err}");

    let count = server.json(&["device", "count"]);
    assert_eq!(count["count"], 30);
    let count = server.json(&[
        "device",
        "count",
        "--query",
        r#"region = "eu" and version >= "2.0.10""#,
    ]);
    let expected = (10..=30).filter(|n| n % 3 != 0).count();
    assert_eq!(count["count"], expected as u64);

    let page = server.json(&["device", "list", "--query", "beta"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], "dev-1");

    let (code, _, err) = server.cli(&["device", "tag", "dev-2", "ring=canary"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = server.cli(&["device", "untag", "dev-1", "beta"]);
    assert_eq!(code, 0, "{err}");
    let shown = server.json(&["device", "show", "dev-2"]);
    assert_eq!(shown["tags"]["ring"], "canary", "{shown}");
    let (code, table, _) = server.cli(&["device", "list", "--query", "ring = canary"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("dev-2"),
        "human table lists the device: {table}"
    );

    // A bad query is refused by the server (exit 1) with the position.
    let (code, _, err) = server.cli(&["device", "list", "--query", "hw == \"x\""]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("invalid_query") || err.contains("position 3"),
        "{err}"
    );

    // An unknown device is refused, not an error of ours.
    let (code, _, err) = server.cli(&["device", "show", "nope"]);
    assert_eq!(code, 1, "{err}");

    // Tokens: create a viewer, who may read but not write.
    let created = server.json(&["token", "create", "--name", "ci", "--role", "viewer"]);
    let viewer = created["token"].as_str().unwrap().to_owned();
    let as_viewer = |args: &[&str]| {
        run(fleetward(&server.data_dir)
            .env("FLEETWARD_TOKEN", &viewer)
            .args(args))
    };
    assert_eq!(as_viewer(&["device", "count"]).0, 0);
    let (code, _, err) = as_viewer(&["device", "tag", "dev-3", "x=y"]);
    assert_eq!(code, 1, "viewer may not tag: {err}");
    assert!(err.contains("forbidden"), "{err}");

    let listed = server.json(&["token", "list"]);
    assert!(
        !listed.to_string().contains(&viewer),
        "secrets never listed"
    );
    let id = created["info"]["id"].as_str().unwrap();
    let (code, _, err) = server.cli(&["token", "revoke", id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = as_viewer(&["device", "count"]);
    assert_eq!(code, 1, "revoked token refused: {err}");

    // No token at all: a local usage error.
    let (code, _, err) = run(fleetward(&server.data_dir).args(["device", "count"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("FLEETWARD_TOKEN"), "{err}");

    // Every mutation above is in the audit log.
    let audit = server.json(&["audit", "list", "--limit", "1000"]);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "device.register",
        "device.register_batch",
        "device.update",
        "token.create",
        "token.revoke",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }

    // The same changes are in the security-event log; an export verifies
    // offline, and an edited export does not.
    let export = dir.path().join("events.jsonl");
    let checkpoints = dir.path().join("checkpoints.json");
    let (code, _, err) = server.cli(&[
        "events",
        "export",
        "--output",
        export.to_str().unwrap(),
        "--checkpoints",
        checkpoints.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let verify_export = |path: &Path| {
        run(fleetward(&server.data_dir).args([
            "events",
            "verify",
            "--from",
            path.to_str().unwrap(),
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ]))
    };
    let (code, out, err) = verify_export(&export);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let text = std::fs::read_to_string(&export).unwrap();
    let forged = text.replacen("device.register", "device.reboot", 1);
    assert_ne!(forged, text);
    let forged_path = dir.path().join("forged.jsonl");
    std::fs::write(&forged_path, forged).unwrap();
    let (code, out, _) = verify_export(&forged_path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED: entry"), "{out}");

    let (code, syslog, err) = server.cli(&[
        "events",
        "export",
        "--format",
        "syslog",
        "--kind",
        "operator.action",
    ]);
    assert_eq!(code, 0, "{err}");
    let first = syslog.lines().next().unwrap();
    assert!(
        first.starts_with("<110>1 "),
        "facility 13, severity info: {first}"
    );
    assert!(
        first.contains(" fleetward - operator.action [fleetward@32473 seq=\"1\""),
        "{first}"
    );

    // SIGTERM: a clean exit, and server.json is gone.
    let data_dir = server.data_dir.clone();
    assert_eq!(server.terminate(), 0);
    assert!(!data_dir.join("server.json").exists());

    // Offline, from the database: the shutdown signed a checkpoint.
    let (code, out, err) = run(fleetward(&data_dir).args(["events", "verify"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 signed checkpoints, 0 entries after"),
        "{out}"
    );
    let (code, _, err) = run(fleetward(&dir.path().join("nowhere")).args(["events", "verify"]));
    assert_eq!(code, 2, "{err}");

    // With the server gone, the CLI says so with its own exit code.
    let (code, _, err) = run(fleetward(&data_dir)
        .env("FLEETWARD_TOKEN", "fwt_0000000000000000_x")
        .args(["--server", "http://127.0.0.1:9", "device", "count"]));
    assert_eq!(code, 3, "{err}");
}

#[test]
fn completions_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = run(fleetward(dir.path()).args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("fleetward"), "{shell}");
    }
    let (code, _, _) = run(fleetward(dir.path()).args(["completions", "tcsh"]));
    assert_eq!(code, 2, "unknown shell is a usage error");
}

#[test]
fn demo_runs_on_a_fresh_machine() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(fleetward(dir.path()).current_dir(dir.path()).arg("demo"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Target queries run in the database"), "{out}");
    // The whole loop: the gate scans every SBOM and stops the vulnerable
    // build; both releases are signed and published; 50 agents take 1.1.0
    // through three phases with exactly the injected failures (two fall
    // back, one refuses a rollback), within the budget; the bad release
    // pauses by itself; the summary counts it all.
    for expected in [
        "RUSTSEC-2021-0003",
        "exit 1: a CI job or the publish gate stops this build",
        "release 1.0.0 for rev2: published",
        "release 1.1.0 for rev2: published",
        "50 agents enrolled",
        "phase 3/3 open",
        "completed: phase 3/3, 47 of 50 succeeded, 3 failed",
        "agents: 47 updated",
        "-> paused by itself:",
        "canaries: 5 fell back",
        "chain intact",
        "updated:         47\n",
        "failed:          3 (2 fell back after a failed boot, 1 refused the offer)",
        "rolled back:     7 (2 in the 1.1.0 rollout, 5 canaries of 1.2.0)",
        "phases paused:   1 ",
        "        1  device.rollback_attempt\n",
        "        1  rollout.paused\n",
        "        3  release.published\n",
        "web console:     http://127.0.0.1:",
        "`fleetward demo --keep` keeps it running",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    // Updates are not mistaken for downgrades (reports arrive in order).
    assert!(!out.contains("device.downgrade"), "{out}");
    // Three SBOMs scanned: two pass, one is stopped.
    assert_eq!(
        out.matches("exit 0: this build may ship").count(),
        2,
        "{out}"
    );
}

#[test]
fn sim_refuses_bad_settings_before_doing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let root = dir.path().join("root.json");
    std::fs::write(&root, "{}").unwrap();
    for (args, message) in [
        (
            vec!["--enroll-token", "fwe_x", "--fail-rate", "2"],
            "--fail-rate is a share between 0 and 1",
        ),
        (
            vec!["--enroll-token", "fwe_x", "--devices", "0"],
            "0 is not in 1..=1000000",
        ),
        (vec![], "no --enroll-token and no operator token"),
    ] {
        let mut command = fleetward(dir.path());
        command.env_remove("FLEETWARD_TOKEN").args([
            "sim",
            "--device-url",
            "https://127.0.0.1:1",
            "--ca",
            ca.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ]);
        let (code, _, err) = run(command.args(&args));
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

/// The release manager's flow: offline keys in a directory the server never
/// reads, 2-of-3 targets signing done one key at a time, publish, revoke.
#[test]
fn signed_release_flow_with_offline_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let keys = dir.path().join("offline-keys");
    let keys_arg = keys.to_str().unwrap();
    let (code, _, err) = server.cli(&[
        "keys",
        "init",
        "--dir",
        keys_arg,
        "--targets-keys",
        "3",
        "--targets-threshold",
        "2",
    ]);
    assert_eq!(code, 0, "keys init: {err}");
    for entry in std::fs::read_dir(&keys).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().ends_with(".key") {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", entry.path());
        }
    }
    let (code, _, err) = server.cli(&["keys", "init", "--dir", keys_arg]);
    assert_eq!(code, 2, "never overwrites keys: {err}");
    let (code, _, err) = server.cli(&["keys", "root", "--dir", keys_arg]);
    assert_eq!(code, 0, "keys root: {err}");

    let image = dir.path().join("fw.img");
    std::fs::write(&image, vec![7u8; 300_000]).unwrap();
    let image_arg = image.to_str().unwrap();
    let created = server.json(&[
        "release",
        "create",
        "--version",
        "1.4.0",
        "--hardware",
        "rev2",
        "--artifact",
        image_arg,
        "--quiet",
    ]);
    assert_eq!(created["state"], "draft", "{created}");
    let (code, _, err) = server.cli(&[
        "release",
        "create",
        "--version",
        "1.4.0",
        "--hardware",
        "rev2",
        "--artifact",
        image_arg,
        "--quiet",
    ]);
    assert_eq!(code, 1, "a duplicate version is refused: {err}");

    // Publishing a draft is refused; one signature of a 2-of-3 threshold is
    // not enough to sign it; the second key completes it.
    let (code, _, _) = server.cli(&["release", "publish", "1.4.0"]);
    assert_eq!(code, 1, "a draft cannot be published");
    let (code, _, err) = server.cli(&[
        "release",
        "sign",
        "1.4.0",
        "--keys",
        keys_arg,
        "--max-signatures",
        "1",
    ]);
    assert_ne!(code, 0, "below threshold: {err}");
    let (code, _, err) = server.cli(&[
        "release",
        "sign",
        "1.4.0",
        "--keys",
        keys_arg,
        "--artifact",
        image_arg,
    ]);
    assert_eq!(code, 0, "sign: {err}");
    assert_eq!(
        server.json(&["release", "show", "1.4.0"])["state"],
        "signed"
    );
    assert_eq!(
        server.json(&["release", "publish", "1.4.0"])["state"],
        "published"
    );
    let listed = server.json(&["release", "list"]);
    assert_eq!(listed["items"][0]["version"], "1.4.0", "{listed}");
    assert_eq!(
        server.json(&["release", "revoke", "1.4.0"])["state"],
        "revoked"
    );
    let (code, _, _) = server.cli(&["release", "publish", "1.4.0"]);
    assert_eq!(code, 1, "a revoked release stays revoked");
    assert_eq!(server.terminate(), 0);
}

/// A product line delegated to its own keys with `fleetward keys delegate`:
/// its signed releases move into the role, its new releases are signed
/// with its keys only, other product lines stay with the top-level keys,
/// and re-keying the role retires the old keys.
#[test]
fn product_line_delegation_over_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (keys, rev2_keys, rev2_new_keys) = (path("keys"), path("rev2-keys"), path("rev2-new"));
    for args in [
        vec!["keys", "init", "--dir", &keys],
        vec!["keys", "root", "--dir", &keys],
    ] {
        let (code, _, err) = server.cli(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let create = |version: &str, hardware: &str| {
        let image = dir.path().join(format!("{version}.img"));
        std::fs::write(&image, format!("image {version} for {hardware}")).unwrap();
        server.json(&[
            "release",
            "create",
            "--version",
            version,
            "--hardware",
            hardware,
            "--artifact",
            image.to_str().unwrap(),
            "--quiet",
        ]);
    };
    let sign =
        |version: &str, keys: &str| server.cli(&["release", "sign", version, "--keys", keys]);
    create("1.4.0", "rev2");
    let (code, _, err) = sign("1.4.0", &keys);
    assert_eq!(code, 0, "{err}");

    let delegate = |role_dir: &str| {
        server.cli(&[
            "keys",
            "delegate",
            "--dir",
            &keys,
            "--role",
            "rev2",
            "--role-dir",
            role_dir,
        ])
    };
    let (code, out, err) = delegate(&rev2_keys);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("> rev2/1.4.0/1.4.0.img (now signed by rev2)"),
        "{out}"
    );
    let (code, _, err) = delegate(&rev2_keys);
    assert_ne!(code, 0, "a directory holding keys is never overwritten");
    assert!(err.contains("holds keys already"), "{err}");
    let (code, _, err) = server.cli(&[
        "keys",
        "delegate",
        "--dir",
        &keys,
        "--role",
        "targets",
        "--role-dir",
        &path("bad"),
    ]);
    assert_ne!(code, 0, "a top-level role name is refused");
    assert!(err.contains("role name"), "{err}");
    assert!(!dir.path().join("bad").exists(), "nothing made");
    // Refused by the server (metadata that expires now): no keys are left.
    let (code, _, err) = server.cli(&[
        "keys",
        "delegate",
        "--dir",
        &keys,
        "--role",
        "rev4",
        "--role-dir",
        &path("rev4-keys"),
        "--expires",
        "0s",
    ]);
    assert_ne!(code, 0, "expired metadata is refused");
    assert!(err.contains("expired"), "{err}");
    assert!(err.contains("were removed"), "{err}");
    assert!(
        !dir.path().join("rev4-keys").exists(),
        "no keys left behind"
    );

    create("1.5.0", "rev2");
    let (code, _, err) = sign("1.5.0", &keys);
    assert_ne!(code, 0, "the top-level keys do not sign rev2 any more");
    assert!(err.contains("delegated role rev2"), "{err}");
    let (code, out, err) = sign("1.5.0", &rev2_keys);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Signed rev2 version 2"), "{out}");
    let (code, _, err) = server.cli(&["release", "publish", "1.5.0"]);
    assert_eq!(code, 0, "{err}");

    create("3.0.0", "rev3");
    let (code, _, err) = sign("3.0.0", &rev2_keys);
    assert_ne!(code, 0, "rev2 keys do not sign rev3");
    assert!(err.contains("role rev2"), "{err}");
    let (code, _, err) = sign("3.0.0", &keys);
    assert_eq!(code, 0, "{err}");

    // Re-keying rev2: the old keys sign nothing more.
    let (code, _, err) = delegate(&rev2_new_keys);
    assert_eq!(code, 0, "{err}");
    create("1.6.0", "rev2");
    let (code, _, err) = sign("1.6.0", &rev2_keys);
    assert_ne!(code, 0, "retired keys");
    assert!(err.contains("not signed by these keys"), "{err}");
    let (code, _, err) = sign("1.6.0", &rev2_new_keys);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = server.cli(&["release", "publish", "1.6.0"]);
    assert_eq!(code, 0, "{err}");
}

/// `fleetward rollout …` against a real server, with a release published
/// the release manager's way.
#[test]
fn rollout_flow_over_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let keys = dir.path().join("offline-keys");
    let keys_arg = keys.to_str().unwrap();
    for args in [
        vec!["keys", "init", "--dir", keys_arg],
        vec!["keys", "root", "--dir", keys_arg],
    ] {
        let (code, _, err) = server.cli(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let image = dir.path().join("fw.img");
    std::fs::write(&image, vec![7u8; 1000]).unwrap();
    server.json(&[
        "release",
        "create",
        "--version",
        "1.4.0",
        "--hardware",
        "rev2",
        "--artifact",
        image.to_str().unwrap(),
        "--quiet",
    ]);
    let (code, _, err) = server.cli(&["release", "sign", "1.4.0", "--keys", keys_arg]);
    assert_eq!(code, 0, "sign: {err}");
    server.json(&["release", "publish", "1.4.0"]);
    for n in 1..=4 {
        let id = format!("dev-{n}");
        let (code, _, err) = server.cli(&[
            "device",
            "register",
            &id,
            "--hardware",
            "rev2",
            "--version",
            "1.3.0",
            "--active",
        ]);
        assert_eq!(code, 0, "{err}");
    }

    let created = server.json(&[
        "rollout",
        "create",
        "--release",
        "1.4.0",
        "--target",
        r#"hw = "rev2""#,
        "--phases",
        "50%,100%",
        "--soak",
        "30m",
        "--success-threshold",
        "95%",
        "--max-failures",
        "5%",
        "--max-failures-count",
        "3",
        "--rate",
        "100/min",
        "--window",
        "daily 00:00-24:00 UTC",
        "--timeout",
        "2h",
        "--retries",
        "2",
        "--continuous",
    ]);
    assert_eq!(created["queued"], 4, "{created}");
    let settings = &created["rollout"]["settings"];
    assert_eq!(
        (
            settings["phases"].as_str(),
            settings["rate"].as_str(),
            settings["retries"].as_u64(),
            settings["continuous"].as_bool()
        ),
        (Some("50%,100%"), Some("100/min"), Some(2), Some(true)),
        "{settings}"
    );
    let id = created["rollout"]["id"].as_str().unwrap().to_owned();

    // Bad settings: refused by the server with the setting named, exit 1.
    for (flag, value, expected) in [
        ("--phases", "10%,5%,100%", "--phases"),
        ("--window", "Mon-Fri 05:00-05:00", "--window"),
        ("--success-threshold", "150%", "--success-threshold"),
    ] {
        let (code, _, err) = server.cli(&[
            "rollout",
            "create",
            "--release",
            "1.4.0",
            "--target",
            "hw = rev2",
            flag,
            value,
        ]);
        assert_eq!(code, 1, "{flag} {value}: {err}");
        assert!(err.contains(expected), "{err}");
    }

    let listed = server.json(&["rollout", "list"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let (code, table, _) = server.cli(&["rollout", "list"]);
    assert_eq!(code, 0);
    assert!(table.contains(&id), "{table}");
    let (code, status, err) = server.cli(&["rollout", "status", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(status.contains("phase 1/2"), "{status}");
    assert!(
        status.contains("50%") && status.contains("100%") && status.contains('['),
        "per-phase bars: {status}"
    );

    assert_eq!(server.json(&["rollout", "pause", &id])["state"], "paused");
    let (code, _, _) = server.cli(&["rollout", "pause", &id]);
    assert_eq!(code, 1, "paused already");
    assert_eq!(server.json(&["rollout", "resume", &id])["state"], "running");
    let aborted = server.json(&["rollout", "abort", &id]);
    assert_eq!(aborted["rollout"]["state"], "aborted");
    assert_eq!(aborted["cancelled"], 4);
    // Nothing older is published: a rollback is refused.
    let (code, _, err) = server.cli(&["rollout", "abort", &id, "--rollback"]);
    assert_eq!(code, 1, "{err}");
    // --watch returns once the rollout no longer runs.
    let (code, _, err) = server.cli(&["rollout", "status", &id, "--watch"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.terminate(), 0);
}
