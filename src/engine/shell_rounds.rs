//! Tests of a shell's output read in rounds, as a batch reads it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::shell::USER_REDIRECTS;
use super::{OutputSink, Shell, ShellSpec};

/// What came on which stream, in the order the sink was given it.
#[derive(Default)]
struct Rounds {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// For each stdout delivery, the stderr bytes delivered before it.
    stderr_before: Vec<(Vec<u8>, usize)>,
}

impl OutputSink for Rounds {
    async fn stdout(&mut self, data: Vec<u8>) {
        self.stdout.extend_from_slice(&data);
        self.stderr_before
            .push((self.stdout.clone(), self.stderr.len()));
    }

    async fn stderr(&mut self, data: Vec<u8>) {
        self.stderr.extend_from_slice(&data);
    }

    fn read_gap(&self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
}

#[tokio::test]
async fn in_rounds_what_stderr_got_first_is_read_before_stdout_goes_on() {
    let workdir = tempfile::tempdir().unwrap();
    let mut shell = Shell::start(ShellSpec {
        program: "bash".into(),
        workdir: workdir.path().to_path_buf(),
        env: Vec::new(),
        setup: None,
        guard: None,
        interrupted: Arc::new(Notify::new()),
    })
    .await
    .unwrap();
    // As a batch ends each task: its stderr marker, then its stdout one.
    let script = "for i in $(seq 40); do printf 'e%02d;' $i >&2; printf 'o%02d;' $i; \
                  sleep 0.003; done";
    let mut sink = Rounds::default();
    let end = shell
        .run_lines(
            &format!("{{ {script}; }} {USER_REDIRECTS}\n"),
            None,
            &mut sink,
        )
        .await
        .unwrap();
    assert_eq!(end.status, 0);
    let tasks = |stream: &[u8], mark: u8| stream.iter().filter(|&&b| b == mark).count();
    assert_eq!(tasks(&sink.stdout, b'o'), 40);
    assert_eq!(tasks(&sink.stderr, b'e'), 40);
    // Every task whose stdout end was handed on had its stderr end
    // handed on before it: so a round's tasks are complete when read.
    for (stdout, stderr_len) in &sink.stderr_before {
        let ended = tasks(stdout, b'o');
        assert!(
            tasks(&sink.stderr[..*stderr_len], b'e') >= ended,
            "{ended} tasks ended on stdout, their stderr not read yet: {:?}",
            String::from_utf8_lossy(&sink.stderr[..*stderr_len])
        );
    }
    assert!(
        sink.stderr_before.len() < 40,
        "read in rounds, not a read per task"
    );
}
