//! Request smuggling guard for HTTP/1.1: follows the framing of the bytes a client sends
//! (heads, `Content-Length` bodies, chunked bodies) and flags a head that carries both
//! `Content-Length` and `Transfer-Encoding`. hyper frames such a request by its chunking
//! and closes the connection after it (RFC 9112 §6.1), but drops the length from the head
//! before any handler sees it; the flag lets the router answer it 400 instead of serving
//! it. (Two different lengths are hyper's own 400.)
//!
//! [`Framing`] is the pure state, fed bytes as they are read by the connection's stream
//! (`idle::Tracked`), which tells its `Activity`. Bytes the state cannot follow (a head
//! hyper will refuse anyway) stop the watch: it never refuses by itself.

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a request head into `buf`.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line into `buf`.
    ChunkSize,
    /// Skipping this many chunk bytes, then the CRLF after them.
    ChunkData(u64),
    /// Skipping the CRLF (or LF) after a chunk's data: bytes left to see.
    ChunkEnd,
    /// Reading the trailer section into `buf`, up to its blank line.
    Trailers,
    /// Not following any more.
    Lost,
}

/// The framing of one HTTP/1.1 connection's inbound bytes.
#[derive(Debug)]
pub struct Framing {
    state: State,
    buf: Vec<u8>,
    heads: u64,
    max_head: usize,
}

impl Framing {
    /// Follows a connection whose heads are at most `max_head` bytes (larger: hyper's 431).
    pub fn new(max_head: usize) -> Self {
        Self {
            state: State::Head,
            buf: Vec::new(),
            heads: 0,
            max_head,
        }
    }

    /// Whether every byte fed so far belongs to a whole request: the next byte would
    /// begin a request head. (A connection being followed no more is never.)
    pub fn between_messages(&self) -> bool {
        self.state == State::Head && self.buf.is_empty()
    }

    /// Feeds the next bytes read; returns the index (0-based, in arrival order) of the
    /// first head among them that carries both `Content-Length` and `Transfer-Encoding`.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<u64> {
        let mut flagged = None;
        while !bytes.is_empty() {
            match self.state {
                State::Lost => return flagged,
                State::Head => {
                    if self.buf.is_empty() {
                        // Blank lines before a request line are ignored (RFC 9112 §2.2).
                        let skip = bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
                        bytes = &bytes[skip.count()..];
                        if bytes.is_empty() {
                            break;
                        }
                    }
                    let Some((end, used)) = self.take_until_blank_line(bytes) else {
                        bytes = &[];
                        if self.buf.len() > self.max_head {
                            self.state = State::Lost;
                        }
                        continue;
                    };
                    bytes = &bytes[used..];
                    let index = self.heads;
                    self.heads += 1;
                    let head = std::mem::take(&mut self.buf);
                    match head_framing(&head[..end]) {
                        Some(HeadFraming { ambiguous, body }) => {
                            if ambiguous && flagged.is_none() {
                                flagged = Some(index);
                            }
                            self.state = body;
                        }
                        None => self.state = State::Lost,
                    }
                }
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                }
                State::ChunkSize => {
                    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                        self.buf.extend_from_slice(bytes);
                        bytes = &[];
                        if self.buf.len() > 1024 {
                            self.state = State::Lost;
                        }
                        continue;
                    };
                    self.buf.extend_from_slice(&bytes[..nl]);
                    bytes = &bytes[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    self.state = match chunk_size(&line) {
                        Some(0) => {
                            // The trailer section ends at a blank line; seed it with the
                            // line end just read, so an empty section ends at the next.
                            self.buf.extend_from_slice(b"\n");
                            State::Trailers
                        }
                        Some(n) => State::ChunkData(n),
                        None => State::Lost,
                    };
                }
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - n)
                    };
                }
                State::ChunkEnd => match bytes[0] {
                    b'\r' => bytes = &bytes[1..],
                    b'\n' => {
                        bytes = &bytes[1..];
                        self.state = State::ChunkSize;
                    }
                    _ => self.state = State::Lost,
                },
                State::Trailers => match self.take_until_blank_line(bytes) {
                    Some((_, used)) => {
                        bytes = &bytes[used..];
                        self.buf.clear();
                        self.state = State::Head;
                    }
                    None => {
                        bytes = &[];
                        if self.buf.len() > self.max_head {
                            self.state = State::Lost;
                        }
                    }
                },
            }
        }
        flagged
    }

    /// Appends `bytes` to `buf` up to the end of a blank line (`\n\n` or `\n\r\n`); the
    /// head's length without it and how many of `bytes` were used, when found.
    fn take_until_blank_line(&mut self, bytes: &[u8]) -> Option<(usize, usize)> {
        let start = self.buf.len().saturating_sub(2);
        let old = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let found = (start..self.buf.len()).find_map(|i| {
            if self.buf[i] != b'\n' {
                return None;
            }
            match self.buf.get(i + 1) {
                Some(b'\n') => Some((i, i + 2)),
                Some(b'\r') if self.buf.get(i + 2) == Some(&b'\n') => Some((i, i + 3)),
                _ => None,
            }
        })?;
        let (end, after) = found;
        self.buf.truncate(after);
        Some((end, after - old))
    }
}

struct HeadFraming {
    ambiguous: bool,
    body: State,
}

/// How the head frames its body: `None` where hyper would refuse the head.
fn head_framing(head: &[u8]) -> Option<HeadFraming> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next()?;
    if request_line.is_empty() || request_line.starts_with(b"PRI ") {
        return None;
    }
    let (mut length, mut chunked, mut coded) = (None, false, false);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(std::str::from_utf8(value).ok()?.parse::<u64>().ok()?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            coded = true;
            let last = value.rsplit(|&b| b == b',').next().map(trim);
            chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        }
    }
    let body = match (coded, length) {
        (true, _) if chunked => State::ChunkSize,
        (true, _) => return None,
        (false, Some(0) | None) => State::Head,
        (false, Some(n)) => State::Body(n),
    };
    Some(HeadFraming {
        ambiguous: coded && length.is_some(),
        body,
    })
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&b| b == b';').next().map(trim)?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Vec<u64> {
        let mut f = Framing::new(65536);
        parts.iter().filter_map(|p| f.feed(p)).collect()
    }

    const PLAIN: &[u8] = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] =
        b"POST /predict HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n";
    const AMBIGUOUS: &[u8] = b"POST /predict HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn between_messages_only_after_a_whole_request() {
        for message in [PLAIN, CHUNKED] {
            let mut f = Framing::new(65536);
            assert!(f.between_messages());
            for (i, byte) in message.iter().enumerate() {
                f.feed(std::slice::from_ref(byte));
                // Inside the head, the body or the chunks: not yet.
                assert_eq!(
                    f.between_messages(),
                    i + 1 == message.len(),
                    "after byte {i}"
                );
            }
        }
        // A connection no longer followed never is.
        let mut f = Framing::new(16);
        f.feed(b"GET /a-head-longer-than-sixteen-bytes HTTP/1.1\r\n");
        f.feed(b"\r\n");
        assert!(!f.between_messages());
    }

    #[test]
    fn plain_and_chunked_bodies_are_followed_to_the_next_head() {
        let all = [PLAIN, CHUNKED, b"GET /health HTTP/1.1\r\n\r\n", AMBIGUOUS].concat();
        assert_eq!(feed_all(&[&all]), [3]);
        // Byte by byte, the same.
        let mut f = Framing::new(65536);
        let flagged: Vec<u64> = all.iter().filter_map(|b| f.feed(&[*b])).collect();
        assert_eq!(flagged, [3]);
    }

    #[test]
    fn the_smuggled_head_inside_a_length_body_is_not_a_head() {
        // A body that looks like an ambiguous head is a body.
        let body = AMBIGUOUS;
        let head = format!(
            "POST /predict HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        assert_eq!(feed_all(&[head.as_bytes(), body, PLAIN]), Vec::<u64>::new());
    }

    #[test]
    fn either_order_and_bare_line_feeds_are_flagged() {
        assert_eq!(
            feed_all(&[b"POST / HTTP/1.1\ntransfer-encoding: chunked\ncontent-length: 3\n\n0\n\n"]),
            [0]
        );
        assert_eq!(
            feed_all(&[b"\r\n\r\n", AMBIGUOUS]),
            [0],
            "blank lines first"
        );
    }

    #[test]
    fn what_hyper_refuses_stops_the_watch() {
        let mut f = Framing::new(65536);
        assert_eq!(
            f.feed(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"),
            None
        );
        assert_eq!(f.state, State::Lost);
        assert_eq!(f.feed(AMBIGUOUS), None);
        let mut big = Framing::new(16);
        assert_eq!(
            big.feed(b"GET / HTTP/1.1\r\nx-long: aaaaaaaaaaaaaaaaaa"),
            None
        );
        assert_eq!(big.state, State::Lost);
    }
}
