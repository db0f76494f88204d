//! `fleetward init`, `fleetward server` and `fleetward events verify` with
//! `--database-url postgres://…`, as processes, on a private PostgreSQL
//! (`fleetward-testpg`). Skipped loudly without PostgreSQL binaries; CI
//! requires them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetward");

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

#[test]
fn init_server_and_verify_on_postgres() {
    let Some(url) = fleetward_testpg::fresh_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = run(fleetward(&data).args(["--json", "init", "--database-url", &url]));
    assert_eq!(code, 0, "init: {err}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["admin_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !data.join("fleetward.db").exists(),
        "no SQLite database beside PostgreSQL"
    );
    let (code, _, err) = run(fleetward(&data).args(["init", "--database-url", &url]));
    assert_eq!(code, 2, "init twice: {err}");
    assert!(err.contains("already"), "{err}");

    let mut child = fleetward(&data)
        .args([
            "server",
            "--database-url",
            &url,
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
    // Startup readiness, not a timing assertion: give up after a generous bound.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("server.json").exists() {
        assert!(Instant::now() < deadline, "server never wrote server.json");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cli = |args: &[&str]| run(fleetward(&data).env("FLEETWARD_TOKEN", &token).args(args));
    for n in 0..5 {
        let (code, _, err) = cli(&[
            "device",
            "register",
            &format!("pg-{n}"),
            "--hardware",
            "rev2",
            "--version",
            &format!("1.{n}.0"),
            "--tag",
            "region=eu",
            "--active",
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) = cli(&[
        "--json",
        "device",
        "count",
        "--query",
        r#"region = "eu" and version >= "1.3.0""#,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["count"], 2);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // Offline verification reads PostgreSQL; the shutdown signed a checkpoint.
    let (code, out, err) = run(fleetward(&data).args(["events", "verify", "--database-url", &url]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 signed checkpoints, 0 entries after"),
        "{out}"
    );
    // A database that is not there: a clear error, not an empty "ok".
    let missing = format!("{}_missing", url);
    let (code, _, err) =
        run(fleetward(&data).args(["events", "verify", "--database-url", &missing]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("opening the database"), "{err}");
}

/// An installation that started on SQLite moves to PostgreSQL: the server
/// there serves its devices, and its event log verifies offline.
#[test]
fn migrate_moves_an_installation_to_postgres() {
    let Some(url) = fleetward_testpg::fresh_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = run(fleetward(&data).args(["--json", "init"]));
    assert_eq!(code, 0, "init: {err}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["admin_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let serve = |extra: &[&str]| {
        let mut command = fleetward(&data);
        command.args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--device-listen",
            "127.0.0.1:0",
            "--log",
            "warn",
        ]);
        command.args(extra);
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Startup readiness, not a timing assertion: a generous bound.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !data.join("server.json").exists() {
            assert!(Instant::now() < deadline, "server never wrote server.json");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    };
    let stop = |mut child: std::process::Child| {
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(child.wait().unwrap().code(), Some(0));
    };
    let cli = |args: &[&str]| run(fleetward(&data).env("FLEETWARD_TOKEN", &token).args(args));

    let server = serve(&[]);
    for n in 0..4 {
        let (code, _, err) = cli(&[
            "device",
            "register",
            &format!("m-{n}"),
            "--hardware",
            "rev1",
        ]);
        assert_eq!(code, 0, "{err}");
    }
    stop(server);

    // A postgres URL only as --to, and an existing source only.
    let (code, _, err) = run(fleetward(&data).args(["migrate", "--to", "sqlite:///tmp/x.db"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) =
        run(fleetward(&dir.path().join("nowhere")).args(["migrate", "--to", &url]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not exist"), "{err}");

    let (code, out, err) = run(fleetward(&data).args(["--json", "migrate", "--to", &url]));
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tables"]["devices"], 4, "{report}");
    assert_eq!(report["verified_entries"], report["event_head"], "{report}");
    // Twice: the target is no longer empty.
    let (code, _, err) = run(fleetward(&data).args(["migrate", "--to", &url]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");

    let server = serve(&["--database-url", &url]);
    let (code, out, err) = cli(&["--json", "device", "count"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["count"], 4);
    let (code, _, err) = cli(&["device", "register", "m-after", "--hardware", "rev1"]);
    assert_eq!(code, 0, "{err}");
    stop(server);
    let (code, out, err) = run(fleetward(&data).args(["events", "verify", "--database-url", &url]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok:"), "{out}");
}
