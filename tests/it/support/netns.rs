//! A network namespace joined to this one by a veth pair: a client inside it connects from
//! an address of its own, not loopback, as a client on another machine would (a second
//! address on `lo` would still be this machine's loopback interface). Made with iproute2's
//! `ip`, which needs root: the suite runs as root (it starts PostgreSQL as a user of its
//! own). Removed on drop, the veth pair with it.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace and the two ends of its link.
pub struct NetNs {
    name: String,
    /// This namespace's end of the link.
    pub host: Ipv4Addr,
    /// The other end, the client's address.
    pub inside: Ipv4Addr,
}

/// Runs `ip ARGS`, failing the test with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2) for a network namespace: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {} (a network namespace needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// A fresh namespace with a /30 of 10.254.0.0/16 on its link, unique to this process
    /// and call.
    pub fn create() -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("igtest-{pid}-{n}");
        // Interface names have at most 15 bytes.
        let host_if = format!("igh{}x{n}", pid % 100_000);
        let ns_if = format!("ign{}x{n}", pid % 100_000);
        // One of the 16,384 /30 blocks of 10.254.0.0/16, by pid and call.
        let block = (pid.wrapping_mul(8).wrapping_add(n)) % 16_384;
        let base = u32::from(Ipv4Addr::new(10, 254, 0, 0)) + block * 4;
        let (host, inside) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        ip(&["netns", "add", &name]);
        // From here on, dropping it removes what was made.
        let ns = NetNs { name, host, inside };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns.name,
        ]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{inside}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
