//! Logs (tail, follow, per stream) and commands in a replica (output, exit code, stdin,
//! terminal size).

use std::time::Duration;

use futures::StreamExt;
use kumo_workload::{
    Backend, DeployOptions, ExecRequest, LogLine, LogOptions, StdStream, WorkloadError,
};
use tokio::io::AsyncWriteExt;

use crate::support::{self, collect, engine, eventually, group, idle, service};

/// Writes a line to stderr, then (a moment later: the engine reads stdout and stderr on
/// separate pipes, so only time orders lines across them) five to stdout, then one more once
/// `/tmp/go` exists.
const CHATTY: &str = "echo oops >&2; sleep 1; for i in 1 2 3 4 5; do echo line-$i; done; \
    while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after-go; sleep 3600";

async fn all_lines(
    engine: &support::Engine,
    lease: &kumo_types::LeaseId,
    opts: &LogOptions,
) -> Vec<LogLine> {
    let stream = engine.backend.logs(lease, opts).await.expect("logs");
    stream.map(|l| l.expect("log line")).collect().await
}

#[tokio::test]
async fn logs_hold_the_output_with_tail_and_follow() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let chatty = service("chatty", support::IMAGE, &["sh", "-c", CHATTY]);
    engine
        .backend
        .deploy(
            &lease,
            &group(vec![chatty, idle("quiet")]),
            &DeployOptions::default(),
        )
        .await
        .expect("deploy");
    let service_only = LogOptions {
        service: Some("chatty".into()),
        ..Default::default()
    };
    let lines = eventually(10, "the service's output", || async {
        let lines = all_lines(&engine, &lease, &service_only).await;
        (lines.len() >= 6).then_some(lines)
    })
    .await;
    let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(
        text,
        ["oops", "line-1", "line-2", "line-3", "line-4", "line-5"]
    );
    assert!(
        lines
            .iter()
            .all(|l| l.service == "chatty" && l.replica == 0)
    );
    assert_eq!(lines[0].stream, StdStream::Stderr);
    assert!(lines[1..].iter().all(|l| l.stream == StdStream::Stdout));

    let tail = all_lines(
        &engine,
        &lease,
        &LogOptions {
            tail: Some(2),
            ..service_only.clone()
        },
    )
    .await;
    let text: Vec<&str> = tail.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(text, ["line-4", "line-5"]);

    // Follow: the last line so far, then what is written while the stream is open. (The
    // engine request starts at the first poll, so the first line is read before writing more.)
    let mut follow = engine
        .backend
        .logs(
            &lease,
            &LogOptions {
                service: None,
                tail: Some(1),
                follow: true,
            },
        )
        .await
        .expect("follow");
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .expect("a line within 10s")
            .expect("stream open")
            .expect("line")
    };
    assert_eq!(next_line().await.line, "line-5");
    let go = engine.sh(&lease, "chatty", "touch /tmp/go").await;
    assert_eq!(go.code, 0, "{go:?}");
    let next = next_line().await;
    assert_eq!(
        (next.service.as_str(), next.line.as_str()),
        ("chatty", "after-go")
    );

    let err = engine
        .backend
        .logs(
            &lease,
            &LogOptions {
                service: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .err()
        .expect("an unknown service is refused");
    assert!(
        matches!(&err, WorkloadError::UnknownService { known, .. } if known == "chatty, quiet"),
        "{err}"
    );
}

#[tokio::test]
async fn commands_return_output_and_exit_codes() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    engine
        .backend
        .deploy(&lease, &group(vec![idle("box")]), &DeployOptions::default())
        .await
        .expect("deploy");

    let hi = engine.exec(&lease, "box", 0, &["echo", "hi"]).await;
    assert_eq!(
        (hi.stdout.as_str(), hi.stderr.as_str(), hi.code),
        ("hi\n", "", 0)
    );

    let failing = engine.sh(&lease, "box", "echo bad >&2; exit 3").await;
    assert_eq!(
        (
            failing.stdout.as_str(),
            failing.stderr.as_str(),
            failing.code
        ),
        ("", "bad\n", 3)
    );

    // Standard input, closed by shutting the writer down.
    let mut session = engine
        .backend
        .exec(
            &lease,
            &ExecRequest {
                service: "box".into(),
                replica: 0,
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "tr a-z A-Z; echo \"$GREETING\"".into(),
                ],
                tty: false,
                stdin: true,
                env: vec!["GREETING=done".into()],
            },
        )
        .await
        .expect("exec");
    session.stdin.write_all(b"hello\n").await.unwrap();
    session.stdin.shutdown().await.unwrap();
    let upper = collect(session).await;
    assert_eq!((upper.stdout.as_str(), upper.code), ("HELLO\ndone\n", 0));

    // A terminal: its size is what the session says.
    let session = engine
        .backend
        .exec(
            &lease,
            &ExecRequest {
                service: "box".into(),
                replica: 0,
                cmd: vec!["sh".into(), "-c".into(), "sleep 1; stty size".into()],
                tty: true,
                stdin: true,
                env: vec![],
            },
        )
        .await
        .expect("exec with a tty");
    session.resize(100, 30).await.expect("resize");
    let sized = collect(session).await;
    assert_eq!((sized.stdout.trim(), sized.code), ("30 100", 0));

    let err = engine
        .backend
        .exec(
            &lease,
            &ExecRequest {
                service: "box".into(),
                replica: 1,
                cmd: vec!["true".into()],
                tty: false,
                stdin: false,
                env: vec![],
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WorkloadError::UnknownReplica {
                replica: 1,
                count: 1,
                ..
            }
        ),
        "{err}"
    );
}
