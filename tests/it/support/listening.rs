//! Whether a process holds a listening TCP socket on a port, read from `/proc`.
//!
//! A test that wants "this gateway does not listen" cannot just try to connect: once the
//! port is free, any other test's listener on port 0 may be given it, and the connection
//! then succeeds to someone else. The kernel's own tables name the owner.

use std::collections::HashSet;

/// `true` when process `pid` holds a socket in the LISTEN state on local `port` (IPv4 or
/// IPv6, any address).
pub fn process_listens_on(pid: u32, port: u16) -> bool {
    let ours = socket_inodes(pid);
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .any(|inode| ours.contains(&inode))
}

/// The inodes of the sockets among `pid`'s open descriptors.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The inodes of LISTEN sockets on local `port` in one `/proc/net/tcp{,6}` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit(':').next()?;
            let listening = *cols.get(3)? == LISTEN;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| cols.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[test]
fn a_listener_of_this_process_is_found_and_a_closed_one_is_not() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    assert!(process_listens_on(std::process::id(), port));
    drop(listener);
    assert!(!process_listens_on(std::process::id(), port));
}
