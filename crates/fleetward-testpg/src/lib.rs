//! A private PostgreSQL server for tests.
//!
//! Tests must run against a real PostgreSQL, but never against one that
//! happens to be running on the machine: [`PgServer::start`] runs `initdb`
//! in a fresh temporary directory and starts `postgres` on a free port of
//! 127.0.0.1, with its unix socket inside that directory, trust
//! authentication and durability switched off (a test database need not
//! survive a power cut). [`shared`] starts one such server per test binary
//! and hands out a fresh database per call, which keeps suites fast.
//!
//! Teardown does not depend on destructors (statics never drop): the server
//! runs under a small shell keeper whose stdin is a pipe from the test
//! process. When the test process ends, however it ends, the pipe closes,
//! and the keeper stops PostgreSQL and deletes the directory.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as CI
//! does), `initdb` and `postgres` run as `nobody` through `setpriv` (or
//! `runuser`), in a directory handed to that user.
//!
//! Binaries are found through `FLEETWARD_PG_BINDIR`, `pg_config --bindir`,
//! or the newest `/usr/lib/postgresql/*/bin`. Without them [`shared`]
//! returns `None` after printing `SKIPPED: PostgreSQL binaries not found`,
//! unless `FLEETWARD_TEST_POSTGRES=required`, when it panics instead.
#![allow(clippy::panic, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that turns a skip into a failure.
pub const REQUIRED_ENV: &str = "FLEETWARD_TEST_POSTGRES";

/// Whether the server keeps its data through a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync, synchronous commit and full-page writes off: tests need not
    /// survive a power cut, and run faster without.
    Test,
    /// PostgreSQL's own defaults, as an installation runs: what benchmarks
    /// must measure.
    Production,
}

/// A running private PostgreSQL. Dropping it stops the server and deletes
/// its directory.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    keeper: Child,
    keeper_stdin: Option<ChildStdin>,
    databases: AtomicU32,
}

/// The server shared by every test of this test binary, or `None` (after a
/// loud message) when PostgreSQL is not installed and not required.
pub fn shared() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| match find_bindir() {
            Some(bindir) => Some(
                PgServer::start_in(&bindir, Durability::Test)
                    .unwrap_or_else(|e| panic!("starting a private PostgreSQL failed: {e}")),
            ),
            None => {
                if std::env::var(REQUIRED_ENV).as_deref() == Ok("required") {
                    panic!(
                        "PostgreSQL binaries not found and {REQUIRED_ENV}=required: \
                         install postgresql (apt-get install postgresql) or set FLEETWARD_PG_BINDIR"
                    );
                }
                // Straight to the stream, not eprintln!: the test harness
                // captures the macros' output of passing tests, and a skip
                // must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: PostgreSQL binaries not found; PostgreSQL tests did not run. \
                     Install postgresql or set FLEETWARD_PG_BINDIR (CI sets {REQUIRED_ENV}=required). ***\n"
                );
                None
            }
        })
        .as_ref()
}

/// A fresh, empty database on the shared server: its URL, or `None` when
/// PostgreSQL is skipped (see [`shared`]).
pub fn fresh_database() -> Option<String> {
    shared().map(PgServer::create_database)
}

/// Where the PostgreSQL server binaries are, if anywhere.
pub fn find_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("FLEETWARD_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return has_initdb(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    // Debian keeps server binaries per major version.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// How to run a command as an unprivileged user when we are root.
fn demote_prefix() -> Result<Vec<String>, String> {
    let uid = command_output(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Ok(Vec::new());
    }
    let tool_exists = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if tool_exists("setpriv") {
        let uid = command_output(Command::new("id").args(["-u", "nobody"]))?;
        let gid = command_output(Command::new("id").args(["-g", "nobody"]))?;
        Ok(vec![
            "setpriv".into(),
            format!("--reuid={}", uid.trim()),
            format!("--regid={}", gid.trim()),
            "--clear-groups".into(),
            "--".into(),
        ])
    } else if tool_exists("runuser") {
        Ok(vec![
            "runuser".into(),
            "-u".into(),
            "nobody".into(),
            "--".into(),
        ])
    } else {
        Err(
            "running as root, and neither setpriv nor runuser is available \
             to run PostgreSQL as an unprivileged user"
                .into(),
        )
    }
}

fn command_output(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn hand_to_nobody(path: &Path, prefix: &[String]) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    let uid = command_output(Command::new("id").args(["-u", "nobody"]))?;
    let gid = command_output(Command::new("id").args(["-g", "nobody"]))?;
    let parse = |s: &str| s.trim().parse::<u32>().map_err(|e| e.to_string());
    std::os::unix::fs::chown(path, Some(parse(&uid)?), Some(parse(&gid)?))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

impl PgServer {
    /// Starts a private server with the binaries found by [`find_bindir`].
    pub fn start() -> Result<PgServer, String> {
        PgServer::start_with(Durability::Test)
    }

    /// Starts a private server with the given durability.
    pub fn start_with(durability: Durability) -> Result<PgServer, String> {
        let bindir = find_bindir().ok_or("PostgreSQL binaries not found")?;
        PgServer::start_in(&bindir, durability)
    }

    fn start_in(bindir: &Path, durability: Durability) -> Result<PgServer, String> {
        let prefix = demote_prefix()?;
        let dir = tempfile::Builder::new()
            .prefix("fleetward-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        hand_to_nobody(&dir, &prefix)?;
        let data = dir.join("data");
        let mut initdb = Command::new(prefix.first().map_or(bindir.join("initdb"), PathBuf::from));
        if !prefix.is_empty() {
            initdb.args(&prefix[1..]).arg(bindir.join("initdb"));
        }
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(&dir);
        if let Err(e) = command_output(&mut initdb) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("initdb: {e}"));
        }
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind.
        for _ in 0..5 {
            let port = free_port()?;
            match PgServer::launch(bindir, &dir, &prefix, port, durability) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_error)
    }

    fn launch(
        bindir: &Path,
        dir: &Path,
        prefix: &[String],
        port: u16,
        durability: Durability,
    ) -> Result<PgServer, String> {
        let log = dir.join(format!("postgres-{port}.log"));
        // "$@" is the postgres command line; the keeper stops it (fast
        // shutdown) and deletes the directory once its stdin closes.
        let script = r#"
            dir="$1"; log="$2"; shift 2
            "$@" >>"$log" 2>&1 &
            pid=$!
            while :; do
                read -r cmd || cmd=stop
                case "$cmd" in
                    pause) kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null ;;
                    resume) "$@" >>"$log" 2>&1 & pid=$! ;;
                    *) break ;;
                esac
            done
            kill -INT "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            [ "$cmd" = keep ] || rm -rf "$dir"
        "#;
        let mut keeper = Command::new("sh");
        keeper.arg("-c").arg(script).arg("fleetward-testpg");
        keeper.arg(dir).arg(&log);
        keeper.args(prefix);
        keeper
            .arg(bindir.join("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
            ]);
        match durability {
            Durability::Test => keeper.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=64MB",
            ]),
            // A small production setting for a machine of a few GiB.
            Durability::Production => keeper.args(["-c", "shared_buffers=1GB"]),
        };
        let mut keeper = keeper
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let keeper_stdin = keeper.stdin.take();
        let server = PgServer {
            port,
            dir: dir.to_owned(),
            bindir: bindir.to_owned(),
            keeper,
            keeper_stdin,
            databases: AtomicU32::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.is_ready() {
                return Ok(server);
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if log_text.contains("FATAL") || Instant::now() > deadline {
                // Dropping `server` would delete the directory; only stop
                // this attempt's postgres.
                let mut server = server;
                server.dir = PathBuf::new();
                return Err(format!(
                    "postgres did not start on port {port}:\n{log_text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server accepts connections now.
    pub fn is_ready(&self) -> bool {
        Command::new(self.bindir.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server (fast shutdown: sessions are cut) until
    /// [`PgServer::resume`], for tests of a database going away. Only on a
    /// server of one's own, not the [`shared`] one.
    pub fn pause(&mut self) {
        self.tell(b"pause\n");
        self.wait_until(false);
    }

    /// Starts the paused server again, on the same port and data.
    pub fn resume(&mut self) {
        self.tell(b"resume\n");
        self.wait_until(true);
    }

    fn tell(&mut self, command: &[u8]) {
        let stdin = self.keeper_stdin.as_mut().expect("the keeper is running");
        stdin.write_all(command).expect("telling the keeper");
        stdin.flush().expect("telling the keeper");
    }

    /// Waits (boundedly: this is start-up, not a timed assertion) until the
    /// server's readiness is `ready`.
    fn wait_until(&self, ready: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.is_ready() != ready {
            assert!(
                Instant::now() < deadline,
                "postgres on port {} never became {}",
                self.port,
                if ready { "ready" } else { "unavailable" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement as the superuser on database `database`.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        command_output(
            Command::new(self.bindir.join("psql"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-A", "-t"])
                .args(["-v", "ON_ERROR_STOP=1", "-p"])
                .arg(self.port.to_string())
                .arg("-d")
                .arg(database)
                .arg("-c")
                .arg(sql),
        )
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        self.url(&name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A failed launch keeps the directory for the next attempt.
        let command: &[u8] = if self.dir.as_os_str().is_empty() {
            b"keep\n"
        } else {
            b"stop\n"
        };
        if let Some(mut stdin) = self.keeper_stdin.take() {
            let _ = stdin.write_all(command);
        }
        let _ = self.keeper.wait();
    }
}
