//! The spool: rows Postgres could not take yet, in append-only segment files on local disk.
//!
//! A segment is `<seq>.spool`: an 8-byte magic, then records of `len: u32 LE`,
//! `xxh3-64(payload): u64 LE`, `payload` (a [`Record`] as JSON). Appends go to the newest
//! segment and are fsync'd per batch; a failed append is cut back off, so a segment only
//! ends torn if the process dies mid-write. Replay reads the oldest sealed segment, and the
//! caller deletes it only once Postgres has committed its rows. A torn or corrupt record
//! ends a segment: what precedes it is replayed, the rest is reported. A new process never
//! appends to an old segment, so a torn tail is always a segment's last bytes.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::prediction_log::record::Record;

const MAGIC: &[u8; 8] = b"IGSPOOL1";
const RECORD_HEADER: usize = 4 + 8;
/// A record larger than this is corruption, not a row.
const MAX_RECORD: usize = 16 * 1024 * 1024;
/// A segment is sealed (and a new one started) past this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Slot directories a shared spool root grows, one per process beyond the first.
const REPLICA_SLOT: &str = "replica-";
/// More processes than this on one spool root is a misconfiguration.
const MAX_REPLICA_SLOTS: usize = 64;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Taking `bytes` more would pass `spool_max_bytes`.
    #[error("spool full: {used} of {cap} bytes used, {bytes} more refused")]
    Full { used: u64, cap: u64, bytes: u64 },
    /// Another process holds the directory (two processes never share a slot: one could
    /// replay and delete a segment the other still appends to); for a shared root, every
    /// slot is taken.
    #[error("spool directory {path} is in use by other infergate processes")]
    Locked { path: PathBuf },
    /// The file system refused.
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What reading a segment found.
#[derive(Debug)]
pub struct SegmentContents {
    /// The intact records, in order.
    pub records: Vec<Record>,
    /// Where and why reading stopped early, if it did.
    pub torn: Option<Torn>,
}

/// A record that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// Byte offset of the bad record.
    pub offset: u64,
    /// Bytes from there to the end, not replayed.
    pub discarded_bytes: u64,
    /// What was wrong.
    pub reason: &'static str,
}

/// A sealed segment, ready to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

struct Open {
    file: File,
    seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// The spool directory.
pub struct Spool {
    dir: PathBuf,
    /// Held (locked) for as long as this spool is open.
    _lock: File,
    max_bytes: u64,
    sealed: VecDeque<Segment>,
    open: Option<Open>,
    next_seq: u64,
}

impl Spool {
    /// Opens (creating) the directory; segments left by an earlier process are sealed and
    /// queued for replay, oldest first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let lock = lock_dir(dir)?.ok_or_else(|| SpoolError::Locked {
            path: dir.to_owned(),
        })?;
        let sealed = segments_in(dir)?;
        let next_seq = sealed.last().map_or(1, |s| s.seq + 1);
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            max_bytes,
            sealed: sealed.into(),
            open: None,
            next_seq,
        })
    }

    /// Opens the first free slot of a spool directory that several processes share (the
    /// old and the new gateway during a rollout, replicas on one volume): `root` itself,
    /// else `root/replica-<n>/`. Segments in slots no process holds are then adopted —
    /// moved into this slot and replayed from here — so rows a replica left behind are not
    /// stranded in a slot nobody opens again.
    pub fn open_shared(root: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let mut spool = match Self::open(root, max_bytes) {
            Err(SpoolError::Locked { .. }) => Self::open_replica_slot(root, max_bytes)?,
            other => other?,
        };
        spool.adopt_free_slots(root)?;
        Ok(spool)
    }

    fn open_replica_slot(root: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        for n in 1..=MAX_REPLICA_SLOTS {
            match Self::open(&root.join(format!("{REPLICA_SLOT}{n}")), max_bytes) {
                Err(SpoolError::Locked { .. }) => continue,
                other => return other,
            }
        }
        Err(SpoolError::Locked {
            path: root.to_owned(),
        })
    }

    fn adopt_free_slots(&mut self, root: &Path) -> Result<(), SpoolError> {
        let mut slots = vec![root.to_owned()];
        for entry in std::fs::read_dir(root).map_err(io_err(root))? {
            let entry = entry.map_err(io_err(root))?;
            let is_slot = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(REPLICA_SLOT));
            if is_slot && entry.file_type().is_ok_and(|t| t.is_dir()) {
                slots.push(entry.path());
            }
        }
        for slot in slots.into_iter().filter(|s| *s != self.dir) {
            // A slot a live process holds is its own; skip it.
            let Some(_held) = lock_dir(&slot)? else {
                continue;
            };
            for segment in segments_in(&slot)? {
                let seq = self.next_seq;
                let to = self.dir.join(format!("{seq:012}.spool"));
                std::fs::rename(&segment.path, &to).map_err(io_err(&segment.path))?;
                self.next_seq += 1;
                tracing::info!(from = %segment.path.display(), to = %to.display(),
                    "prediction log: adopted a segment another process left behind");
                self.sealed.push_back(Segment {
                    seq,
                    path: to,
                    bytes: segment.bytes,
                });
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty()
            && self
                .open
                .as_ref()
                .is_none_or(|o| o.bytes <= MAGIC.len() as u64)
    }

    /// Bytes on disk, all segments.
    pub fn bytes(&self) -> u64 {
        self.sealed.iter().map(|s| s.bytes).sum::<u64>() + self.open.as_ref().map_or(0, |o| o.bytes)
    }

    /// Appends `records` and fsyncs. All or nothing: on error the segment is cut back to
    /// where it was.
    pub fn append(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            // Serializing a Record (strings, numbers, a JSON value) cannot fail.
            let payload = serde_json::to_vec(r).unwrap_or_default();
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
        }
        let used = self.bytes();
        let extra = buf.len() as u64
            + if self.open.is_none() {
                MAGIC.len() as u64
            } else {
                0
            };
        if used + extra > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                cap: self.max_bytes,
                bytes: extra,
            });
        }
        let open = self.open_segment()?;
        let before = open.bytes;
        let written = open
            .file
            .write_all(&buf)
            .and_then(|()| open.file.sync_data());
        if let Err(e) = written {
            // Leave no half record behind; if even that fails, the reader stops there.
            let _ = open.file.set_len(before);
            return Err(SpoolError::Io {
                path: open.path.clone(),
                source: e,
            });
        }
        open.bytes += buf.len() as u64;
        if open.bytes >= SEGMENT_BYTES {
            self.seal();
        }
        Ok(())
    }

    fn open_segment(&mut self) -> Result<&mut Open, SpoolError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => self.create_segment()?,
        };
        Ok(self.open.insert(open))
    }

    fn create_segment(&mut self) -> Result<Open, SpoolError> {
        let seq = self.next_seq;
        let path = self.dir.join(format!("{seq:012}.spool"));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_data())
            .map_err(io_err(&path))?;
        // The new file's name must survive a crash too.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.next_seq += 1;
        Ok(Open {
            file,
            seq,
            path,
            bytes: MAGIC.len() as u64,
        })
    }

    /// Closes the segment being appended to, so replay can take it.
    pub fn seal(&mut self) {
        if let Some(open) = self.open.take() {
            if open.bytes <= MAGIC.len() as u64 {
                let _ = std::fs::remove_file(&open.path);
            } else {
                self.sealed.push_back(Segment {
                    seq: open.seq,
                    path: open.path,
                    bytes: open.bytes,
                });
            }
        }
    }

    /// The oldest segment to replay; seals the open one when no other is left.
    pub fn oldest(&mut self) -> Option<Segment> {
        if self.sealed.is_empty() {
            self.seal();
        }
        self.sealed.front().cloned()
    }

    /// Deletes a replayed segment (call only after its rows are committed).
    pub fn remove(&mut self, segment: &Segment) -> Result<(), SpoolError> {
        self.sealed.retain(|s| s.seq != segment.seq);
        match std::fs::remove_file(&segment.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SpoolError::Io {
                path: segment.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Writes `records` to a segment of their own, set aside as `.rejected` (rows Postgres
    /// refuses, kept for an operator, never replayed).
    pub fn set_aside(&mut self, records: &[Record]) -> Result<PathBuf, SpoolError> {
        self.seal();
        self.append(records)?;
        self.seal();
        match self.sealed.back().cloned() {
            Some(segment) => self.reject(&segment),
            None => Err(SpoolError::Io {
                path: self.dir.clone(),
                source: io::Error::other("nothing to set aside"),
            }),
        }
    }

    /// Moves a segment Postgres refuses aside (`.rejected`), so it stops blocking the rest
    /// and stays on disk for an operator.
    pub fn reject(&mut self, segment: &Segment) -> Result<PathBuf, SpoolError> {
        self.sealed.retain(|s| s.seq != segment.seq);
        let to = segment.path.with_extension("rejected");
        std::fs::rename(&segment.path, &to).map_err(io_err(&segment.path))?;
        Ok(to)
    }
}

/// Reads a segment's intact records; stops at the first torn or corrupt one.
pub fn read_segment(path: &Path) -> Result<SegmentContents, SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    Ok(parse_segment(&bytes))
}

/// Parses a segment's bytes: the intact records, and where and why it stops early.
pub fn parse_segment(bytes: &[u8]) -> SegmentContents {
    let total = bytes.len() as u64;
    let torn = |offset: usize, reason| Torn {
        offset: offset as u64,
        discarded_bytes: total - offset as u64,
        reason,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return SegmentContents {
            records: Vec::new(),
            torn: (!bytes.is_empty()).then(|| torn(0, "not a spool segment (bad magic)")),
        };
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + RECORD_HEADER) else {
            return SegmentContents {
                records,
                torn: Some(torn(at, "truncated record header")),
            };
        };
        let mut len4 = [0u8; 4];
        let mut sum8 = [0u8; 8];
        len4.copy_from_slice(&header[..4]);
        sum8.copy_from_slice(&header[4..]);
        let len = u32::from_le_bytes(len4) as usize;
        if len > MAX_RECORD {
            return SegmentContents {
                records,
                torn: Some(torn(at, "record length out of range")),
            };
        }
        let start = at + RECORD_HEADER;
        let Some(payload) = bytes.get(start..start + len) else {
            return SegmentContents {
                records,
                torn: Some(torn(at, "truncated record")),
            };
        };
        if xxhash_rust::xxh3::xxh3_64(payload) != u64::from_le_bytes(sum8) {
            return SegmentContents {
                records,
                torn: Some(torn(at, "checksum mismatch")),
            };
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => records.push(r),
            Err(_) => {
                return SegmentContents {
                    records,
                    torn: Some(torn(at, "undecodable record")),
                };
            }
        }
        at = start + len;
    }
    SegmentContents {
        records,
        torn: None,
    }
}

/// Locks `dir` (created if missing) for this process; `None` when another holds it.
fn lock_dir(dir: &Path) -> Result<Option<File>, SpoolError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock_path = dir.join(".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(&lock_path)(e)),
    }
}

/// The segments in `dir`, oldest first.
fn segments_in(dir: &Path) -> Result<Vec<Segment>, SpoolError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".spool"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(seq) = seq {
            let bytes = entry.metadata().map_err(io_err(&path))?.len();
            segments.push(Segment { seq, path, bytes });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn record(i: i64) -> Record {
        Record {
            prediction_id: Uuid::now_v7(),
            created_at_us: 1_700_000_000_000_000 + i,
            request_id: format!("r{i}"),
            model_name: "m".into(),
            model_version: "1".into(),
            cache_status: "miss".into(),
            input_hash: format!("{i:032x}"),
            input_features: Some(vec![Some(i as f32), Some(0.5)]),
            image_hash: None,
            image_bytes: None,
            prediction: "x".into(),
            top_class: Some(0),
            confidence: Some(0.5),
            all_predictions: serde_json::json!([]),
            latency_us: 10,
            client_addr: None,
            api_key: None,
            trace_id: None,
            shadow_version: None,
            shadow_top1_agree: None,
            shadow_max_delta: None,
            model_load_us: None,
        }
    }

    #[test]
    fn shadow_columns_survive_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let mut mirrored = record(0);
        mirrored.shadow_version = Some("2.0.0".into());
        mirrored.shadow_top1_agree = Some(false);
        // Not a short decimal: the JSON must carry the f32 exactly.
        mirrored.shadow_max_delta = Some(0.1 + f32::EPSILON);
        let records = vec![mirrored, record(1)];
        spool.append(&records).unwrap();
        let seg = spool.oldest().unwrap();
        let got = read_segment(&seg.path).unwrap();
        assert!(got.torn.is_none());
        assert_eq!(got.records, records);
    }

    #[test]
    fn appended_records_are_replayed_in_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(spool.is_empty());
        let first: Vec<Record> = (0..3).map(record).collect();
        let second: Vec<Record> = (3..5).map(record).collect();
        spool.append(&first).unwrap();
        spool.append(&second).unwrap();
        assert!(!spool.is_empty());
        drop(spool);
        // A new process: the old segment is sealed, appends go to a new one.
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[record(5)]).unwrap();
        let seg = spool.oldest().unwrap();
        let got = read_segment(&seg.path).unwrap();
        assert!(got.torn.is_none());
        assert_eq!(got.records, [first, second].concat());
        spool.remove(&seg).unwrap();
        let seg2 = spool.oldest().unwrap();
        assert_ne!(seg2.seq, seg.seq);
        assert_eq!(
            read_segment(&seg2.path).unwrap().records,
            vec![record_like(&seg2)]
        );
        spool.remove(&seg2).unwrap();
        assert!(spool.is_empty());
        assert!(spool.oldest().is_none());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(".lock")]);
    }

    fn record_like(seg: &Segment) -> Record {
        read_segment(&seg.path).unwrap().records[0].clone()
    }

    #[test]
    fn a_torn_tail_keeps_the_intact_records_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let records: Vec<Record> = (0..4).map(record).collect();
        spool.append(&records).unwrap();
        let seg = spool.oldest().unwrap();
        let full = std::fs::read(&seg.path).unwrap();
        // Every cut inside the last record loses only that record.
        let last_start = {
            let mut at = MAGIC.len();
            for _ in 0..3 {
                let len = u32::from_le_bytes(full[at..at + 4].try_into().unwrap()) as usize;
                at += RECORD_HEADER + len;
            }
            at
        };
        for cut in [
            last_start + 1,
            last_start + 7,
            last_start + RECORD_HEADER + 3,
            full.len() - 1,
        ] {
            let got = parse_segment(&full[..cut]);
            assert_eq!(got.records, records[..3].to_vec(), "cut at {cut}");
            let torn = got.torn.expect("torn reported");
            assert_eq!(torn.offset, last_start as u64);
            assert_eq!(torn.discarded_bytes, (cut - last_start) as u64);
        }
        // A flipped byte in the second record: the first survives.
        let mut flipped = full.clone();
        let second = MAGIC.len()
            + RECORD_HEADER
            + u32::from_le_bytes(full[8..12].try_into().unwrap()) as usize;
        flipped[second + RECORD_HEADER + 2] ^= 0x20;
        let got = parse_segment(&flipped);
        assert_eq!(got.records, records[..1].to_vec());
        assert_eq!(got.torn.unwrap().reason, "checksum mismatch");
        // Garbage and empty files.
        assert_eq!(
            parse_segment(b"garbage!garbage").torn.unwrap().reason,
            "not a spool segment (bad magic)"
        );
        assert!(parse_segment(b"").torn.is_none());
    }

    #[test]
    fn the_cap_refuses_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 600).unwrap();
        spool.append(&[record(0)]).unwrap();
        let used = spool.bytes();
        let err = spool
            .append(&(1..10).map(record).collect::<Vec<_>>())
            .unwrap_err();
        assert!(matches!(err, SpoolError::Full { .. }), "{err}");
        assert_eq!(spool.bytes(), used, "nothing of a refused batch is kept");
    }

    #[test]
    fn rejected_segments_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[record(0)]).unwrap();
        let seg = spool.oldest().unwrap();
        let to = spool.reject(&seg).unwrap();
        assert!(to.exists());
        assert!(spool.is_empty());
        // Not picked up again by the next process.
        drop(spool);
        assert!(Spool::open(dir.path(), 1 << 30).unwrap().is_empty());
    }

    #[test]
    fn one_process_per_spool_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = Spool::open(dir.path(), 1 << 30).unwrap();
        let err = Spool::open(dir.path(), 1 << 30).err().unwrap();
        assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
        drop(first);
        assert!(
            Spool::open(dir.path(), 1 << 30).is_ok(),
            "released on close"
        );
    }

    #[test]
    fn set_aside_rows_never_take_spooled_rows_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let good: Vec<Record> = (0..2).map(record).collect();
        spool.append(&good).unwrap();
        let refused = vec![record(9)];
        let path = spool.set_aside(&refused).unwrap();
        assert_eq!(read_segment(&path).unwrap().records, refused);
        let seg = spool.oldest().unwrap();
        assert_eq!(read_segment(&seg.path).unwrap().records, good);
        spool.remove(&seg).unwrap();
        assert!(spool.is_empty());
    }

    #[test]
    fn a_shared_root_gives_each_process_a_slot_and_adopts_free_ones() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Spool::open_shared(dir.path(), 1 << 30).unwrap();
        let (mut first, second, mut third) = (open(), open(), open());
        assert_eq!(first.dir, dir.path());
        assert_ne!(second.dir, third.dir, "a slot each");
        first.append(&[record(1)]).unwrap();
        third.append(&[record(3)]).unwrap();
        third.seal();
        // The third process exits with a row spooled, then the second with none.
        drop(third);
        drop(second);
        let mut fourth = open();
        // `record` draws a fresh prediction_id each call: compare by request id.
        let ids = |seg: &Segment| -> Vec<String> {
            let records = read_segment(&seg.path).unwrap().records;
            records.into_iter().map(|r| r.request_id).collect()
        };
        let seg = fourth.oldest().unwrap();
        assert_eq!(ids(&seg), ["r3"]);
        fourth.remove(&seg).unwrap();
        assert!(fourth.is_empty(), "a held slot is never adopted");
        first.seal();
        let seg = first.oldest().unwrap();
        assert_eq!(ids(&seg), ["r1"]);
    }
}
