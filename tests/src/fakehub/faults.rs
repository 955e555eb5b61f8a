//! Scriptable faults: what a test can make the hub do wrong, and the body
//! shaping that truncates, resets, slows or corrupts an answer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::ExtractFile;

/// A class of routes a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `POST /core/connect/token` on the auth host.
    Token,
    /// Every JSON listing of the API host (`/datasets/bds…`,
    /// `/dataExport/bds`, `/dataExport/bds/list`, `/d2l/api/versions/`).
    List,
    /// The two download routes of the API host that answer 302.
    DownloadRedirect,
    /// Every request to the storage host.
    Storage,
}

/// What a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every request of a route class.
    Route(RouteClass),
    /// One extract, by plugin id and the Unix time (seconds) it was queued.
    /// Status and body faults fire on the storage request serving its zip;
    /// [`FaultKind::WrongDownloadSize`] fires on listings showing it.
    Extract {
        /// Plugin id, compared case-insensitively.
        plugin_id: String,
        /// Epoch seconds of `QueuedForProcessingDate`.
        queued_epoch: i64,
    },
}

impl FaultTarget {
    /// The extract of this file.
    pub fn extract(file: &ExtractFile) -> Self {
        FaultTarget::Extract {
            plugin_id: file.plugin_id.clone(),
            queued_epoch: file.queued.timestamp(),
        }
    }

    pub(crate) fn matches_extract(&self, file: &ExtractFile) -> bool {
        match self {
            FaultTarget::Route(_) => false,
            FaultTarget::Extract {
                plugin_id,
                queued_epoch,
            } => {
                plugin_id.eq_ignore_ascii_case(&file.plugin_id)
                    && *queued_epoch == file.queued.timestamp()
            }
        }
    }
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 with `Retry-After` and without the `X-Rate-Limit-*` headers.
    Status429 {
        /// Value of `Retry-After`.
        retry_after_secs: u64,
    },
    /// 500 Internal Server Error.
    Status500,
    /// 503 Service Unavailable.
    Status503,
    /// `Content-Length` of the full body, then a clean close after this many
    /// bytes.
    TruncateBody {
        /// Bytes sent before the close.
        after_bytes: u64,
    },
    /// The connection is reset (TCP RST) after this many bytes.
    ResetBody {
        /// Bytes sent before the reset.
        after_bytes: u64,
    },
    /// The body trickles at this rate.
    SlowBody {
        /// Bytes per second.
        bytes_per_sec: u64,
    },
    /// Listings report a `DownloadSize` 1024 bytes larger than the zip.
    WrongDownloadSize,
    /// One byte of the served body is flipped (xor 0xFF).
    CorruptByte {
        /// Offset of the byte in the body.
        offset: u64,
    },
}

impl FaultKind {
    pub(crate) fn is_status(self) -> bool {
        matches!(
            self,
            FaultKind::Status429 { .. } | FaultKind::Status500 | FaultKind::Status503
        )
    }

    pub(crate) fn is_body(self) -> bool {
        matches!(
            self,
            FaultKind::TruncateBody { .. }
                | FaultKind::ResetBody { .. }
                | FaultKind::SlowBody { .. }
                | FaultKind::CorruptByte { .. }
        )
    }
}

/// A scripted fault: fires `times` times on matching requests, then the hub
/// behaves normally again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Where it fires.
    pub target: FaultTarget,
    /// What happens.
    pub kind: FaultKind,
    /// How many times it fires.
    pub times: u32,
}

impl Fault {
    /// A fault that fires once.
    pub fn once(target: FaultTarget, kind: FaultKind) -> Self {
        Fault {
            target,
            kind,
            times: 1,
        }
    }

    /// The same fault firing `times` times.
    pub fn times(self, times: u32) -> Self {
        Fault { times, ..self }
    }
}

/// The faults still armed, in the order they were injected.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    armed: Vec<Fault>,
}

impl FaultBook {
    pub(crate) fn inject(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.armed.push(fault);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    pub(crate) fn armed(&self) -> usize {
        self.armed.len()
    }

    /// Fires the first armed fault that `wanted` accepts.
    pub(crate) fn fire_first(&mut self, wanted: impl Fn(&Fault) -> bool) -> Option<FaultKind> {
        let index = self.armed.iter().position(wanted)?;
        Some(self.spend(index))
    }

    /// Fires every armed fault that `wanted` accepts.
    pub(crate) fn fire_all(&mut self, wanted: impl Fn(&Fault) -> bool) -> Vec<FaultKind> {
        let mut fired = Vec::new();
        let mut index = 0;
        while index < self.armed.len() {
            if wanted(&self.armed[index]) {
                let before = self.armed.len();
                fired.push(self.spend(index));
                if self.armed.len() < before {
                    continue;
                }
            }
            index += 1;
        }
        fired
    }

    fn spend(&mut self, index: usize) -> FaultKind {
        let fault = &mut self.armed[index];
        let kind = fault.kind;
        fault.times -= 1;
        if fault.times == 0 {
            self.armed.remove(index);
        }
        kind
    }
}

/// Set when the body of a connection's answer is to end with a TCP reset;
/// the connection then closes with `SO_LINGER` 0.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResetFlag(Arc<AtomicBool>);

impl ResetFlag {
    pub(crate) fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a body is to be damaged, from the body faults that fired.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BodyPlan {
    corrupt_at: Option<u64>,
    bytes_per_sec: Option<u64>,
    truncate_at: Option<u64>,
    reset_at: Option<u64>,
}

impl BodyPlan {
    pub(crate) fn from_kinds(kinds: &[FaultKind]) -> Self {
        let mut plan = BodyPlan::default();
        for kind in kinds {
            match *kind {
                FaultKind::CorruptByte { offset } => plan.corrupt_at = Some(offset),
                FaultKind::SlowBody { bytes_per_sec } => {
                    plan.bytes_per_sec = Some(bytes_per_sec.max(1));
                }
                FaultKind::TruncateBody { after_bytes } => plan.truncate_at = Some(after_bytes),
                FaultKind::ResetBody { after_bytes } => plan.reset_at = Some(after_bytes),
                _ => {}
            }
        }
        plan
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.corrupt_at.is_none()
            && self.bytes_per_sec.is_none()
            && self.truncate_at.is_none()
            && self.reset_at.is_none()
    }

    fn cut_at(&self) -> Option<u64> {
        match (self.truncate_at, self.reset_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A body stream damaged according to `plan`.
pub(crate) fn shape_body(
    source: BoxStream<'static, io::Result<Bytes>>,
    plan: BodyPlan,
    reset: Option<ResetFlag>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let shaper = Shaper {
        source,
        pending: Bytes::new(),
        position: 0,
        plan,
        reset,
        finished: false,
        started: None,
    };
    futures::stream::unfold(shaper, Shaper::next)
}

struct Shaper {
    source: BoxStream<'static, io::Result<Bytes>>,
    pending: Bytes,
    position: u64,
    plan: BodyPlan,
    reset: Option<ResetFlag>,
    finished: bool,
    /// When a slowed body started.
    started: Option<tokio::time::Instant>,
}

impl Shaper {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.finished {
            return None;
        }
        if let Some(cut) = self.plan.cut_at()
            && self.position >= cut
        {
            // hyper holds small writes in its buffer until the body stalls;
            // stalling here sends what came before the cut.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return self.cut();
        }
        while self.pending.is_empty() {
            match self.source.next().await? {
                Ok(chunk) => self.pending = chunk,
                Err(error) => {
                    self.finished = true;
                    return Some((Err(error), self));
                }
            }
        }

        let chunk = self.take_chunk();
        if let Some(rate) = self.plan.bytes_per_sec {
            // Paced against the start, not chunk by chunk, so that the
            // timer's granularity does not lower the rate.
            let started = *self.started.get_or_insert_with(tokio::time::Instant::now);
            let sent = self.position + chunk.len() as u64;
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        self.position += chunk.len() as u64;
        Some((Ok(chunk), self))
    }

    /// The next piece of the pending bytes: no further than the cut, small
    /// enough for a slow body to trickle, with the corrupted byte flipped.
    fn take_chunk(&mut self) -> Bytes {
        let mut take = self.pending.len() as u64;
        if let Some(cut) = self.plan.cut_at() {
            take = take.min(cut - self.position);
        }
        if let Some(rate) = self.plan.bytes_per_sec {
            take = take.min((rate / 10).max(1));
        }
        let chunk = self.pending.split_to(take as usize);

        match self.plan.corrupt_at {
            Some(offset) if (self.position..self.position + take).contains(&offset) => {
                let mut bytes = BytesMut::from(&chunk[..]);
                bytes[(offset - self.position) as usize] ^= 0xFF;
                bytes.freeze()
            }
            _ => chunk,
        }
    }

    fn cut(mut self) -> Option<(io::Result<Bytes>, Self)> {
        self.finished = true;
        if self.plan.reset_at.is_some_and(|at| self.position >= at) {
            if let Some(flag) = &self.reset {
                flag.raise();
            }
            let error = io::Error::new(io::ErrorKind::ConnectionReset, "fault: reset body");
            return Some((Err(error), self));
        }
        // Ending the stream short of Content-Length makes hyper close the
        // connection without a reset.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(plan: BodyPlan, data: &'static [u8]) -> (Vec<u8>, bool) {
        let source = futures::stream::iter(vec![Ok(Bytes::from_static(data))]).boxed();
        let mut stream = Box::pin(shape_body(source, plan, None));
        let mut out = Vec::new();
        let mut failed = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(_) => failed = true,
            }
        }
        (out, failed)
    }

    #[tokio::test]
    async fn corrupt_flips_one_byte() {
        let plan = BodyPlan::from_kinds(&[FaultKind::CorruptByte { offset: 2 }]);
        let (out, failed) = collect(plan, b"abcd").await;
        assert_eq!(out, [b'a', b'b', b'c' ^ 0xFF, b'd']);
        assert!(!failed);
    }

    #[tokio::test]
    async fn truncate_ends_cleanly_and_reset_fails() {
        let plan = BodyPlan::from_kinds(&[FaultKind::TruncateBody { after_bytes: 3 }]);
        assert_eq!(collect(plan, b"abcdef").await, (b"abc".to_vec(), false));
        let plan = BodyPlan::from_kinds(&[FaultKind::ResetBody { after_bytes: 2 }]);
        assert_eq!(collect(plan, b"abcdef").await, (b"ab".to_vec(), true));
    }

    #[test]
    fn book_spends_times_then_disarms() {
        let mut book = FaultBook::default();
        book.inject(
            Fault::once(FaultTarget::Route(RouteClass::List), FaultKind::Status500).times(2),
        );
        let list = |f: &Fault| f.target == FaultTarget::Route(RouteClass::List);
        assert_eq!(book.fire_first(list), Some(FaultKind::Status500));
        assert_eq!(book.fire_first(list), Some(FaultKind::Status500));
        assert_eq!(book.fire_first(list), None);
    }
}
