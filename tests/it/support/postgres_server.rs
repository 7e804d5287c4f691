//! A real PostgreSQL for one test: `initdb` in a temp dir and `postgres` on a free port,
//! both run as a non-root user (initdb refuses root: the `postgres` user the Debian
//! package creates, when the tests run as root). Stopped (by pid, only the one we started)
//! on drop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "infergate";
pub const PASSWORD: &str = "s3cret-pg-password";
pub const DATABASE: &str = "postgres";

pub struct PostgresServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// uid/gid to run as when we are root.
    as_user: Option<(u32, u32)>,
    /// Serve TLS (as well as plain TCP) with a self-signed certificate for 127.0.0.1.
    tls: bool,
}

/// The directory holding `initdb` and `postgres`: on PATH, else Debian's newest
/// `/usr/lib/postgresql/<v>/bin`.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = path.parent() {
            return dir.to_owned();
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL not installed (apt-get install postgresql; scripts/test.sh does it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no initdb under /usr/lib/postgresql")
}

fn id_of(flag: &str, user: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().expect("id");
    assert!(
        out.status.success(),
        "tests run as root and need a non-root `postgres` user for initdb (the postgresql package creates it)"
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PostgresServer {
    /// initdb (password auth, user `infergate`) and start.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), also speaking TLS; the CA to trust is
    /// [`ca_path`](Self::ca_path).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    /// The self-signed certificate of a TLS server.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    fn start_with(tls: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let as_user = is_root().then(|| (id_of("-u", "postgres"), id_of("-g", "postgres")));
        if let Some((uid, gid)) = as_user {
            let ok = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let mut server = Self {
            port,
            child: None,
            dir,
            bin: bin_dir(),
            as_user,
            tls,
        };
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
                .expect("self-signed certificate");
            let key = server.dir.path().join("server.key");
            std::fs::write(server.ca_path(), cert.cert.pem()).expect("cert");
            std::fs::write(&key, cert.signing_key.serialize_pem()).expect("key");
            // Postgres refuses a key others can read.
            let _ = Command::new("chmod").arg("600").arg(&key).status();
            server.chown(&key);
            server.chown(&server.ca_path());
        }
        let pwfile = server.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        server.chown(&pwfile);
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.restart();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn chown(&self, path: &Path) {
        if let Some((uid, gid)) = self.as_user {
            let _ = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(path)
                .status();
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.as_user {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// `postgres://infergate:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// The URL without the password (for tests that pass it as a secret).
    pub fn url_without_password(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// (Re)starts the server on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test database: durability is not what is tested.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(if self.tls {
                vec![
                    "-c".to_owned(),
                    "ssl=on".to_owned(),
                    "-c".to_owned(),
                    format!("ssl_cert_file={}", self.ca_path().display()),
                    "-c".to_owned(),
                    format!(
                        "ssl_key_file={}",
                        self.dir.path().join("server.key").display()
                    ),
                ]
            } else {
                Vec::new()
            })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_client() {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "postgres did not start: {e}\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The server's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn try_client(&self) -> Result<postgres_client::Client, String> {
        postgres_client::connect(&self.url())
    }

    /// Runs `sql` and returns the rows as JSON values (one object per row).
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let client = self.try_client().expect("connect to test postgres");
        client.query_json(sql)
    }

    /// Runs statements.
    pub fn execute(&self, sql: &str) {
        let client = self.try_client().expect("connect to test postgres");
        client.batch(sql);
    }

    /// `SELECT count(*)` of a query's rows.
    /// Whether `table` exists yet (the gateway's log creates it when it first connects).
    pub fn has_table(&self, table: &str) -> bool {
        let rows = self.query(&format!("SELECT to_regclass('{table}') IS NOT NULL AS ok"));
        rows[0]["ok"].as_bool().expect("a boolean")
    }

    pub fn count(&self, sql_from_where: &str) -> i64 {
        let rows = self.query(&format!("SELECT count(*) AS n FROM {sql_from_where}"));
        rows[0]["n"].as_i64().expect("count")
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the data directory goes with the temp dir anyway.
            let _ = Command::new("kill")
                .args(["-s", "QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small blocking client over tokio-postgres, for assertions.
mod postgres_client {
    pub struct Client {
        rt: tokio::runtime::Runtime,
        inner: tokio_postgres::Client,
    }

    pub fn connect(url: &str) -> Result<Client, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let inner = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(client)
        })?;
        Ok(Client { rt, inner })
    }

    impl Client {
        /// Rows as JSON: the query is wrapped in `row_to_json`.
        pub fn query_json(&self, sql: &str) -> Vec<serde_json::Value> {
            let wrapped = format!("SELECT row_to_json(q)::text FROM ({sql}) q");
            self.rt.block_on(async {
                self.inner
                    .query(&wrapped, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("json row"))
                    .collect()
            })
        }

        pub fn batch(&self, sql: &str) {
            self.rt.block_on(async {
                self.inner
                    .batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            });
        }
    }
}
