//! The last logs of a closed lease, kept for its owner for `closed_logs_retention`.
//!
//! A lease's logs live in its containers, and the teardown removes those: without this, a
//! tenant whose lease closed (funds ran out, the provider closed it, a crash loop it wanted to
//! read about) could never see why. So before the teardown, the lease's owner
//! ([`crate::lifecycle`]) captures the last `closed_logs_lines` lines of every replica and
//! keeps them in the daemon's redb file ([`crate::state`]):
//!
//! ```text
//! closed_leases  owner/dseq/gseq/oseq → ClosedLease (JSON: id, closed_ms, why, services,
//!                                        line and byte counts, what was dropped or missed)
//! closed_logs    owner/dseq/gseq/oseq → [LogLine] (JSON: service, replica, stream, line)
//! ```
//!
//! Two tables so that finding a closed lease (every gateway request for it) and pruning read
//! the small records, never the lines.
//!
//! - **Bounded.** At most [`MAX_BYTES`] of JSON per lease, whatever `closed_logs_lines` says:
//!   a tenant controls what its workload prints and must not be able to fill the provider's
//!   disk with it. Over the cap, the oldest line of the replica holding the most bytes goes
//!   first (one chatty replica cannot push out the others' last words); a single line is cut
//!   at [`MAX_LINE_BYTES`]. How many lines were dropped is recorded.
//! - **Never in the way of the teardown.** The capture gives up after [`CAPTURE_TIMEOUT`]
//!   (a stuck engine), keeping what it read; an engine error is logged and recorded, and the
//!   teardown goes on either way.
//! - **Owner only, for a while.** The gateway resolves a closed lease for its owner alone
//!   (another tenant gets `Forbidden`, as for a live lease) and serves only its logs; every
//!   other call answers `410 Gone` saying when it closed and until when its logs are kept. A
//!   record past its retention is treated as absent at once and removed at start and every
//!   [`PRUNE_INTERVAL`].
//!
//! Example: `closed_logs_lines = 1000`, `closed_logs_retention = "24h"`; a lease closed at
//! 12:00 serves `kumo lease logs DSEQ` from these lines until 12:00 the next day.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use kumo_gateway::GatewayError;
use kumo_types::LeaseId;
use kumo_workload::{LogLine, LogOptions, LogStream, WorkloadError};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{daemon::LeaseHost, lease::now_ms, state::lease_key};

/// The most JSON bytes of lines kept per closed lease.
pub const MAX_BYTES: usize = 1 << 20;

/// The longest line kept (longer ones are cut): Docker splits its log lines at 16 KiB too.
pub const MAX_LINE_BYTES: usize = 16 << 10;

/// How long a close waits for the engine to hand over the logs before tearing down anyway.
pub const CAPTURE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often records past their retention are removed while the daemon runs.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// What is known of a lease closed here whose logs are kept (its lines are stored apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedLease {
    /// The lease.
    pub id: LeaseId,
    /// When it closed here (Unix ms): the retention counts from here.
    pub closed_ms: u64,
    /// Why, as the daemon was told (`closed on chain: owner`, `manifest timeout`, ...).
    pub why: String,
    /// Its services, from the manifest it ran (what `service=` may name).
    pub services: Vec<String>,
    /// How many lines are kept.
    pub lines: u64,
    /// Their size (JSON bytes).
    pub bytes: u64,
    /// Lines left out, oldest first, to stay within [`MAX_BYTES`].
    pub dropped_lines: u64,
    /// Why the capture stopped early, if it did: the engine failed or did not answer in time.
    pub incomplete: Option<String>,
}

impl ClosedLease {
    /// Until when (Unix ms) its logs are kept.
    pub fn kept_until(&self, retention: Duration) -> u64 {
        self.closed_ms
            .saturating_add(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether its logs are still kept at `now` (Unix ms).
    pub fn is_kept(&self, now: u64, retention: Duration) -> bool {
        now < self.kept_until(retention)
    }

    /// The answer to anything but its logs: it does not run any more.
    pub fn gone(&self, retention: Duration) -> GatewayError {
        let id = &self.id;
        GatewayError::Gone(format!(
            "lease {}/{}/{} closed at {} ({}): nothing runs any more; only its last logs are kept, until {} (kumo lease logs {})",
            id.dseq,
            id.gseq,
            id.oseq,
            utc_text(self.closed_ms),
            self.why,
            utc_text(self.kept_until(retention)),
            id.dseq
        ))
    }
}

/// What a capture read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The lines kept, replica after replica in the order they came.
    pub lines: Vec<LogLine>,
    /// Their size (JSON bytes).
    pub bytes: u64,
    /// Lines dropped to stay within the cap.
    pub dropped_lines: u64,
    /// Why the capture stopped early, if it did.
    pub incomplete: Option<String>,
}

/// Lines gathered under a byte cap: over it, the oldest line of the replica holding the most
/// bytes is dropped.
struct CappedLines {
    max_bytes: usize,
    bytes: usize,
    dropped: u64,
    /// In the order each replica first appeared.
    replicas: Vec<ReplicaLines>,
}

/// One replica's lines, each with its size, and their total.
struct ReplicaLines {
    service: String,
    replica: u32,
    lines: VecDeque<(LogLine, usize)>,
    bytes: usize,
}

impl CappedLines {
    fn new(max_bytes: usize) -> CappedLines {
        CappedLines {
            max_bytes,
            bytes: 0,
            dropped: 0,
            replicas: Vec::new(),
        }
    }

    fn push(&mut self, mut line: LogLine) {
        let longest = MAX_LINE_BYTES.min(self.max_bytes / 8);
        if line.line.len() > longest {
            let mut end = longest;
            while !line.line.is_char_boundary(end) {
                end -= 1;
            }
            let cut = line.line.len() - end;
            line.line.truncate(end);
            line.line.push_str(&format!(" [{cut} more bytes cut]"));
        }
        // The size it takes in the stored JSON array (escapes included) and its comma.
        let size = serde_json::to_vec(&line).map_or(line.line.len(), |v| v.len()) + 1;
        let at = match self
            .replicas
            .iter()
            .position(|r| r.service == line.service && r.replica == line.replica)
        {
            Some(at) => at,
            None => {
                self.replicas.push(ReplicaLines {
                    service: line.service.clone(),
                    replica: line.replica,
                    lines: VecDeque::new(),
                    bytes: 0,
                });
                self.replicas.len() - 1
            }
        };
        let r = &mut self.replicas[at];
        r.lines.push_back((line, size));
        r.bytes += size;
        self.bytes += size;
        while self.bytes > self.max_bytes {
            let Some(r) = self.replicas.iter_mut().max_by_key(|r| r.bytes) else {
                break;
            };
            let Some((_, size)) = r.lines.pop_front() else {
                break;
            };
            r.bytes -= size;
            self.bytes -= size;
            self.dropped += 1;
        }
    }

    fn finish(self, incomplete: Option<String>) -> Captured {
        Captured {
            lines: self
                .replicas
                .into_iter()
                .flat_map(|r| r.lines.into_iter().map(|(l, _)| l))
                .collect(),
            bytes: self.bytes as u64,
            dropped_lines: self.dropped,
            incomplete,
        }
    }
}

/// Reads the log stream `open` gives until it ends, fails or `timeout` passes (counted from
/// the call, opening included), keeping at most `max_bytes` of lines. An error opening the
/// stream is returned (the lease may not run here at all); anything after is recorded in
/// [`Captured::incomplete`] with the lines read so far.
pub async fn capture(
    open: impl Future<Output = Result<LogStream, WorkloadError>>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Captured, WorkloadError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || format!("the engine did not hand over the logs within {timeout:?}");
    let mut stream = match tokio::time::timeout_at(deadline, open).await {
        Ok(opened) => opened?,
        Err(_) => return Ok(CappedLines::new(max_bytes).finish(Some(late()))),
    };
    let mut kept = CappedLines::new(max_bytes);
    let incomplete = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(line))) => kept.push(line),
            Ok(Some(Err(e))) => break Some(format!("reading the logs failed: {e}")),
            Ok(None) => break None,
            Err(_) => break Some(late()),
        }
    };
    Ok(kept.finish(incomplete))
}

/// The kept `lines` of `lease` as a live `logs` call would give them: one service or all,
/// the last `tail` of each replica; `follow` ends after the last kept line (nothing runs).
pub fn serve(
    closed: &ClosedLease,
    lines: Vec<LogLine>,
    opts: &LogOptions,
) -> Result<LogStream, WorkloadError> {
    if let Some(wanted) = &opts.service
        && !closed.services.contains(wanted)
        && !lines.iter().any(|l| l.service == *wanted)
    {
        return Err(WorkloadError::UnknownService {
            lease: closed.id.to_string(),
            service: wanted.clone(),
            known: closed.services.join(", "),
        });
    }
    let mut replicas: Vec<((String, u32), Vec<LogLine>)> = Vec::new();
    for line in lines {
        if opts.service.as_ref().is_some_and(|s| *s != line.service) {
            continue;
        }
        let key = (line.service.clone(), line.replica);
        match replicas.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(line),
            None => replicas.push((key, vec![line])),
        }
    }
    let mut out = Vec::new();
    for (_, mut lines) in replicas {
        if let Some(n) = opts.tail {
            let skip = lines
                .len()
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
            lines.drain(..skip);
        }
        out.extend(lines.into_iter().map(Ok));
    }
    Ok(futures::stream::iter(out).boxed())
}

/// `2025-06-01 12:00:00 UTC` for a Unix time in ms.
pub fn utc_text(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

impl LeaseHost {
    /// Keeps the last logs of a lease that is closing, before its teardown: only its owner
    /// calls this ([`LeaseHost::lease_closed`]). Nothing when `closed_logs_lines` is 0, when
    /// they are kept already (a lease closed twice: by the provider, then by the chain's
    /// event) or when nothing of the lease ran here.
    pub async fn keep_closed_logs(&self, id: &LeaseId, why: &str) {
        let tail = self.config.closed_logs_lines;
        if tail == 0 {
            return;
        }
        let key = lease_key(id);
        match self.state.closed_lease(&key) {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                warn!(lease = %key, "closed lease's logs: {e}");
                return;
            }
        }
        let record = match self.state.lease(id) {
            Ok(record) => record,
            Err(e) => {
                warn!(lease = %key, "closed lease's logs: reading its record: {e}");
                None
            }
        };
        let services: Vec<String> = record
            .as_ref()
            .and_then(|r| r.manifest.as_ref())
            .map(|g| g.services.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        let captured = if record.as_ref().is_some_and(|r| r.manifest.is_none()) {
            // No manifest, nothing ran: the close is remembered, with no lines.
            Captured::default()
        } else {
            let opts = LogOptions {
                service: None,
                tail: Some(tail),
                follow: false,
            };
            match capture(self.backend.logs(id, &opts), CAPTURE_TIMEOUT, MAX_BYTES).await {
                Ok(captured) => captured,
                // Neither a record nor a workload: nothing of this lease was here.
                Err(WorkloadError::LeaseNotFound { .. }) if record.is_none() => return,
                Err(e) => Captured {
                    incomplete: Some(format!("reading the logs failed: {e}")),
                    ..Captured::default()
                },
            }
        };
        if let Some(why) = &captured.incomplete {
            warn!(lease = %key, "closed lease's logs: {why} (kept what was read)");
        }
        let mut services = services;
        for line in &captured.lines {
            if !services.contains(&line.service) {
                services.push(line.service.clone());
            }
        }
        let closed = ClosedLease {
            id: *id,
            closed_ms: now_ms(),
            why: why.to_string(),
            services,
            lines: captured.lines.len() as u64,
            bytes: captured.bytes,
            dropped_lines: captured.dropped_lines,
            incomplete: captured.incomplete,
        };
        match self.state.keep_closed(&closed, &captured.lines) {
            Ok(()) => info!(
                lease = %key, lines = closed.lines, bytes = closed.bytes,
                dropped = closed.dropped_lines,
                "closed lease's last logs kept for {}",
                crate::config::duration_text::format(&self.config.closed_logs_retention)
            ),
            Err(e) => warn!(lease = %key, "keeping the closed lease's logs: {e}"),
        }
    }

    /// The closed lease `key` (`owner/dseq/gseq/oseq`) whose logs are still kept.
    pub fn kept_closed_lease(&self, key: &str) -> Result<Option<ClosedLease>, GatewayError> {
        let retention = self.config.closed_logs_retention;
        Ok(self
            .state
            .closed_lease(key)
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?
            .filter(|c| c.is_kept(now_ms(), retention)))
    }

    /// `Gone` when `lease` closed and only its logs are kept: for every gateway call but the
    /// logs, so none pretends the lease still runs.
    pub fn refuse_closed(&self, lease: &LeaseId) -> Result<(), GatewayError> {
        match self.kept_closed_lease(&lease_key(lease))? {
            Some(closed) => Err(closed.gone(self.config.closed_logs_retention)),
            None => Ok(()),
        }
    }

    /// The lease's logs: from its replicas while it runs, from what was kept once it closed.
    pub async fn lease_logs(
        &self,
        lease: &LeaseId,
        opts: &LogOptions,
    ) -> Result<LogStream, GatewayError> {
        // Kept logs are written before the teardown: when they exist the lease is closed,
        // even while its record is still being removed.
        if let Some(closed) = self.kept_closed_lease(&lease_key(lease))? {
            let lines = self
                .state
                .closed_logs(&lease_key(lease))
                .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            return Ok(serve(&closed, lines, opts)?);
        }
        Ok(self.backend.logs(lease, opts).await?)
    }

    /// Removes the closed leases' logs past `closed_logs_retention`; how many.
    pub fn prune_closed_logs(&self) -> usize {
        match self
            .state
            .prune_closed(now_ms(), self.config.closed_logs_retention)
        {
            Ok(0) => 0,
            Ok(n) => {
                info!(
                    leases = n,
                    "closed leases' logs past their retention removed"
                );
                n
            }
            Err(e) => {
                warn!("removing closed leases' logs past their retention: {e}");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kumo_types::Address;
    use kumo_workload::StdStream;

    use super::*;

    fn line(service: &str, replica: u32, text: &str) -> LogLine {
        LogLine {
            service: service.into(),
            replica,
            stream: StdStream::Stdout,
            line: text.into(),
        }
    }

    async fn lines(v: Vec<LogLine>) -> Result<LogStream, WorkloadError> {
        Ok(futures::stream::iter(v.into_iter().map(Ok)).boxed())
    }

    #[tokio::test]
    async fn a_chatty_replica_loses_its_oldest_lines_first_and_the_others_keep_theirs() {
        let mut all = vec![line("db", 0, "db ready"), line("db", 0, "db last words")];
        all.extend(
            (0..1000).map(|i| line("web", 0, &format!("web line {i:04} {}", "x".repeat(100)))),
        );
        let got = capture(lines(all), Duration::from_secs(1), 20_000)
            .await
            .unwrap();
        assert!(got.bytes <= 20_000, "{}", got.bytes);
        assert_eq!(got.incomplete, None);
        assert!(got.dropped_lines > 800, "{}", got.dropped_lines);
        assert_eq!(
            got.lines[..2],
            [line("db", 0, "db ready"), line("db", 0, "db last words")]
        );
        let web: Vec<&str> = got.lines[2..].iter().map(|l| &l.line[..13]).collect();
        assert_eq!(web.last(), Some(&"web line 0999"), "the newest lines stay");
        assert_eq!(web.len() as u64 + got.dropped_lines, 1000);
        // One line larger than the cap is cut, not lost.
        let huge = capture(
            lines(vec![line("web", 0, &"y".repeat(100_000))]),
            Duration::from_secs(1),
            20_000,
        )
        .await
        .unwrap();
        assert_eq!(huge.lines.len(), 1);
        assert!(
            huge.lines[0].line.ends_with("more bytes cut]"),
            "{}",
            &huge.lines[0].line[2400..]
        );
    }

    #[tokio::test]
    async fn a_stuck_engine_gives_what_it_sent_within_the_timeout() {
        let stuck = async {
            Ok(
                futures::stream::iter(vec![Ok(line("web", 0, "before the hang"))])
                    .chain(futures::stream::pending())
                    .boxed(),
            )
        };
        let got = capture(stuck, Duration::from_millis(50), MAX_BYTES)
            .await
            .unwrap();
        assert_eq!(got.lines, vec![line("web", 0, "before the hang")]);
        assert!(got.incomplete.unwrap().contains("did not hand over"));
        let never = std::future::pending::<Result<LogStream, WorkloadError>>();
        let got = capture(never, Duration::from_millis(50), MAX_BYTES)
            .await
            .unwrap();
        assert!(got.lines.is_empty() && got.incomplete.is_some());
    }

    #[tokio::test]
    async fn kept_lines_are_served_per_service_with_a_tail_per_replica() {
        let closed = ClosedLease {
            id: LeaseId {
                owner: Address([1; 20]),
                dseq: 5,
                gseq: 1,
                oseq: 1,
                provider: Address([2; 20]),
            },
            closed_ms: 0,
            why: "closed on chain: owner".into(),
            services: vec!["db".into(), "quiet".into(), "web".into()],
            lines: 5,
            bytes: 0,
            dropped_lines: 0,
            incomplete: None,
        };
        let kept = vec![
            line("db", 0, "d1"),
            line("web", 0, "a1"),
            line("web", 0, "a2"),
            line("web", 1, "b1"),
            line("web", 1, "b2"),
        ];
        let read = |opts: LogOptions| {
            let stream = serve(&closed, kept.clone(), &opts);
            async move {
                let lines: Vec<String> = stream?.map(|l| l.unwrap().line).collect().await;
                Ok::<_, WorkloadError>(lines)
            }
        };
        let web_tail_1 = LogOptions {
            service: Some("web".into()),
            tail: Some(1),
            follow: true,
        };
        assert_eq!(read(web_tail_1).await.unwrap(), ["a2", "b2"]);
        assert_eq!(
            read(LogOptions::default()).await.unwrap(),
            ["d1", "a1", "a2", "b1", "b2"]
        );
        let quiet = LogOptions {
            service: Some("quiet".into()),
            ..LogOptions::default()
        };
        assert!(
            read(quiet).await.unwrap().is_empty(),
            "a silent service is known"
        );
        let unknown = LogOptions {
            service: Some("nope".into()),
            ..LogOptions::default()
        };
        assert!(matches!(
            read(unknown).await,
            Err(WorkloadError::UnknownService { .. })
        ));
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_767_225_599_000), "2025-12-31 23:59:59 UTC");
    }
}
