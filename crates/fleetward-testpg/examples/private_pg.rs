//! A private, durable PostgreSQL for benchmark scripts: starts one (initdb
//! in a temporary directory, a free port, PostgreSQL's own durability
//! settings), creates database `fleetward`, prints its URL on one line, and
//! keeps it until standard input closes; then it stops the server and
//! deletes its directory.
//!
//! Usage from a script: `private_pg <fifo >url &`, hold the fifo open for
//! writing while the benchmark runs, close it to tear down.

use std::io::{Read as _, Write as _};

use fleetward_testpg::{Durability, PgServer};

fn main() -> std::process::ExitCode {
    let server = match PgServer::start_with(Durability::Production) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("private_pg: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(error) = server.psql("postgres", "CREATE DATABASE fleetward") {
        eprintln!("private_pg: creating the database: {error}");
        return std::process::ExitCode::from(2);
    }
    println!("{}", server.url("fleetward"));
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
    std::process::ExitCode::SUCCESS
}
