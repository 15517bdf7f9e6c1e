//! A lease's logs: the engine's per-container output frames, cut into lines per replica and
//! stream, merged into one stream.

use std::collections::VecDeque;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use kumo_types::LeaseId;

use super::{DockerBackend, label, labels};
use crate::WorkloadError;
use crate::backend::{LogLine, LogOptions, LogStream, StdStream};

/// A line longer than this is cut: a service that writes without line breaks cannot make the
/// provider buffer without bound.
const MAX_LINE: usize = 64 * 1024;

impl DockerBackend {
    pub(super) async fn logs_stream(
        &self,
        lease: &LeaseId,
        opts: &LogOptions,
    ) -> Result<LogStream, WorkloadError> {
        let mut containers: Vec<(String, u32, String)> = self
            .containers(lease)
            .await?
            .into_iter()
            .filter_map(|c| {
                let service = label(&c.labels, labels::SERVICE).to_string();
                let replica = label(&c.labels, labels::REPLICA).parse().ok()?;
                Some((service, replica, c.id?))
            })
            .collect();
        containers.sort();
        if containers.is_empty() && !self.exists(lease).await? {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        if let Some(wanted) = &opts.service {
            if !containers.iter().any(|(s, _, _)| s == wanted) {
                let mut known: Vec<&str> = containers.iter().map(|(s, _, _)| s.as_str()).collect();
                known.dedup();
                return Err(WorkloadError::UnknownService {
                    lease: lease.to_string(),
                    service: wanted.clone(),
                    known: known.join(", "),
                });
            }
            containers.retain(|(s, _, _)| s == wanted);
        }

        let tail = opts
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let streams: Vec<BoxStream<'static, Result<LogLine, WorkloadError>>> = containers
            .into_iter()
            .map(|(service, replica, id)| {
                let options = LogsOptionsBuilder::new()
                    .stdout(true)
                    .stderr(true)
                    .follow(opts.follow)
                    .tail(&tail)
                    .build();
                lines(service, replica, self.docker.logs(&id, Some(options))).boxed()
            })
            .collect();
        Ok(if opts.follow {
            // Interleaved as written.
            stream::select_all(streams).boxed()
        } else {
            // One replica after the other, in service and replica order.
            stream::iter(streams).flatten().boxed()
        })
    }
}

/// Cuts one container's output frames into [`LogLine`]s.
fn lines(
    service: String,
    replica: u32,
    raw: impl futures::Stream<Item = Result<LogOutput, DockerError>> + Send + 'static,
) -> impl futures::Stream<Item = Result<LogLine, WorkloadError>> + Send + 'static {
    struct State {
        raw: BoxStream<'static, Result<LogOutput, DockerError>>,
        splitter: LineSplitter,
        ready: VecDeque<Result<LogLine, WorkloadError>>,
        done: bool,
        service: String,
        replica: u32,
    }
    impl State {
        fn queue(&mut self, lines: Vec<(StdStream, String)>) {
            for (stream, line) in lines {
                self.ready.push_back(Ok(LogLine {
                    service: self.service.clone(),
                    replica: self.replica,
                    stream,
                    line,
                }));
            }
        }
    }
    let state = State {
        raw: raw.boxed(),
        splitter: LineSplitter::default(),
        ready: VecDeque::new(),
        done: false,
        service,
        replica,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.raw.next().await {
                Some(Ok(frame)) => {
                    let (stream, bytes) = match frame {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            (StdStream::Stdout, message)
                        }
                        LogOutput::StdErr { message } => (StdStream::Stderr, message),
                        LogOutput::StdIn { .. } => continue,
                    };
                    let lines = st.splitter.push(stream, &bytes);
                    st.queue(lines);
                }
                Some(Err(e)) => {
                    st.done = true;
                    let lines = st.splitter.finish();
                    st.queue(lines);
                    let action =
                        format!("reading the logs of {} replica {}", st.service, st.replica);
                    st.ready.push_back(Err(WorkloadError::engine(action, e)));
                }
                None => {
                    st.done = true;
                    let lines = st.splitter.finish();
                    st.queue(lines);
                }
            }
        }
    })
}

/// Joins output frames into whole lines, per standard stream.
#[derive(Debug, Default)]
struct LineSplitter {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LineSplitter {
    /// Adds `bytes` written to `stream`; returns the lines they complete.
    fn push(&mut self, stream: StdStream, bytes: &[u8]) -> Vec<(StdStream, String)> {
        let buf = match stream {
            StdStream::Stdout => &mut self.stdout,
            StdStream::Stderr => &mut self.stderr,
        };
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push((stream, take_line(buf)));
            } else {
                buf.push(b);
                if buf.len() >= MAX_LINE {
                    out.push((stream, take_line(buf)));
                }
            }
        }
        out
    }

    /// The unterminated last lines, at the end of the output.
    fn finish(&mut self) -> Vec<(StdStream, String)> {
        let mut out = Vec::new();
        for (stream, buf) in [
            (StdStream::Stdout, &mut self.stdout),
            (StdStream::Stderr, &mut self.stderr),
        ] {
            if !buf.is_empty() {
                out.push((stream, take_line(buf)));
            }
        }
        out
    }
}

fn take_line(buf: &mut Vec<u8>) -> String {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    let line = String::from_utf8_lossy(buf).into_owned();
    buf.clear();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_lines_per_stream() {
        let mut s = LineSplitter::default();
        assert!(s.push(StdStream::Stdout, b"hel").is_empty());
        assert_eq!(
            s.push(StdStream::Stderr, b"oops\r\n"),
            vec![(StdStream::Stderr, "oops".to_string())]
        );
        assert_eq!(
            s.push(StdStream::Stdout, b"lo\nworld\n\nlast"),
            vec![
                (StdStream::Stdout, "hello".to_string()),
                (StdStream::Stdout, "world".to_string()),
                (StdStream::Stdout, String::new()),
            ]
        );
        assert_eq!(s.finish(), vec![(StdStream::Stdout, "last".to_string())]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut s = LineSplitter::default();
        let lines = s.push(StdStream::Stdout, &vec![b'x'; MAX_LINE * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|(_, l)| l.len() == MAX_LINE));
        assert_eq!(s.finish()[0].1.len(), 5);
    }
}
