//! A PostgreSQL cluster of a test's own, to stop and restart under the daemon
//! (the shared one serves every other test). As root, it runs as the `postgres`
//! user, since initdb refuses root.

use std::path::PathBuf;
use std::process::Command;

pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

fn as_postgres(program: &std::path::Path, args: &[&str]) -> Command {
    if unsafe { libc_geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL is installed under /usr/lib/postgresql (scripts/stack.sh installs it)",
            )
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir =
            std::env::temp_dir().join(format!("doclink-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if unsafe { libc_geteuid() } == 0 {
            assert!(
                Command::new("chown")
                    .args(["postgres"])
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let data = dir.join("data");
        let status = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "doclink",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
        assert!(status.success(), "initdb");
        let port = super::free_port();
        let cluster = Self { dir, bin, port };
        cluster.start_again();
        cluster
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut all = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            options.as_str(),
            "-w",
        ];
        all.extend_from_slice(args);
        let status = as_postgres(&self.bin.join("pg_ctl"), &all)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
    }

    /// The server URL of database `name` (created on first use by the caller).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://doclink@127.0.0.1:{}/{name}", self.port)
    }

    pub fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// A crash-like restart: every connection is dropped.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["restart", "-m", "immediate"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
