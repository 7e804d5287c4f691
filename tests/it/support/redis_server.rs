//! A real `redis-server` for one test: free port, temp dir, no persistence; stopped (by
//! pid, only the one we started) on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    /// `requirepass`, if any.
    pub password: Option<String>,
    /// Serve TLS only (self-signed certificate for 127.0.0.1).
    pub tls: bool,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None, false)
    }

    /// A server that requires `password` (`requirepass`).
    pub fn start_with_password(password: Option<&str>) -> Self {
        Self::start_with(password, false)
    }

    /// A server speaking TLS only, with a self-signed certificate.
    pub fn start_tls() -> Self {
        Self::start_with(None, true)
    }

    fn start_with(password: Option<&str>, tls: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = Self {
            port,
            password: password.map(str::to_owned),
            tls,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
                .expect("self-signed certificate");
            std::fs::write(server.dir.path().join("cert.pem"), cert.cert.pem()).expect("cert");
            std::fs::write(
                server.dir.path().join("key.pem"),
                cert.signing_key.serialize_pem(),
            )
            .expect("key");
        }
        server.restart();
        server
    }

    /// The URL to reach it; a TLS server's certificate is self-signed, so `#insecure`.
    pub fn url(&self) -> String {
        match self.tls {
            true => format!("rediss://127.0.0.1:{}/0#insecure", self.port),
            false => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// (Re)starts the server on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let dir = self.dir.path();
        let listen: Vec<String> = match self.tls {
            false => vec!["--port".into(), port],
            true => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                dir.join("cert.pem").display().to_string(),
                "--tls-key-file".into(),
                dir.join("key.pem").display().to_string(),
                "--tls-ca-cert-file".into(),
                dir.join("cert.pem").display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        let child = Command::new("redis-server")
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(match &self.password {
                Some(p) => vec!["--requirepass".to_owned(), p.clone()],
                None => vec![],
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; scripts/test.sh does it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not start: {e}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: frozen, it accepts connections
    /// (the kernel does) but never answers.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let signal = if frozen { "STOP" } else { "CONT" };
        let ok = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub fn client(&self) -> redis::Client {
        let mut info = redis::IntoConnectionInfo::into_connection_info(self.url()).expect("url");
        if let Some(p) = &self.password {
            let settings = info.redis_settings().clone().set_password(p.clone());
            info = info.set_redis_settings(settings);
        }
        redis::Client::open(info).expect("redis client")
    }

    fn ping(&self) -> redis::RedisResult<String> {
        let mut conn = self
            .client()
            .get_connection_with_timeout(Duration::from_millis(200))?;
        redis::cmd("PING").query(&mut conn)
    }

    /// Keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.client().get_connection().expect("redis connection");
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut conn)
            .expect("KEYS")
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.client().get_connection().expect("redis connection");
        redis::cmd("GET").arg(key).query(&mut conn).expect("GET")
    }

    pub fn set(&self, key: &str, value: &[u8]) {
        let mut conn = self.client().get_connection().expect("redis connection");
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut conn)
            .expect("SET");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen server ignores SIGTERM but not SIGKILL.
            self.kill();
        }
    }
}
