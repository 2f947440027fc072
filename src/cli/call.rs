//! The one way a verb talks to the session: send its request, feed it
//! stdin if the request reads it, run it in the background for `--async`,
//! turn Ctrl-C into an abort of the call's job, and hand the replies to the
//! verb's renderer.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::protocol::data::{CHUNK, read_full};
use crate::protocol::session::{Reply, Request};
use crate::protocol::status::INTERRUPTED;
use crate::session::{Client, SessionPaths};
use crate::transport::write_frame;

/// Lines per frame when a map's items stream from stdin.
const LINES_PER_FRAME: usize = 1024;

/// What of the CLI's stdin follows the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stdin {
    None,
    /// All of it, in chunks (`push --file -`, `scatter --from -`).
    Bytes,
    /// Its lines, as a map's items, read only as fast as the session takes
    /// them; a line holding a NUL byte ends them.
    Lines,
}

/// One call to the session, built, then `run` (or `start`).
pub(super) struct Call {
    session: SessionPaths,
    request: Request,
    stdin: Stdin,
    background: bool,
    /// A second Ctrl-C does not end the process (the console's calls).
    keep_running: bool,
}

/// A call whose replies are coming.
pub(super) struct Started {
    pub replies: Replies,
    /// With `Stdin::Lines`: the number of the line that held a NUL byte,
    /// if one did, once stdin was read to there.
    pub lines: Option<JoinHandle<Option<u64>>>,
}

pub(super) async fn connect(session: &SessionPaths) -> anyhow::Result<Client> {
    Ok(Client::connect(session).await?)
}

impl Call {
    pub(super) fn new(session: SessionPaths, request: Request) -> Call {
        Call {
            session,
            request,
            stdin: Stdin::None,
            background: false,
            keep_running: false,
        }
    }

    /// Ctrl-C, however often, interrupts the call and nothing else: the
    /// console stays.
    pub(crate) fn keep_running(mut self) -> Call {
        self.keep_running = true;
        self
    }

    pub(super) fn stdin(mut self, stdin: Stdin) -> Call {
        self.stdin = stdin;
        self
    }

    /// `--async`: the session runs it as a job, and its id is printed.
    pub(super) fn background(mut self, background: bool) -> Call {
        self.background = background;
        self
    }

    /// Send the request. `None` when it went to the background (its job id
    /// is printed by then).
    pub(super) async fn start(self) -> anyhow::Result<Option<Started>> {
        if self.background {
            self.submit().await?;
            return Ok(None);
        }
        let mut client = connect(&self.session).await?;
        client.send(&self.request).await?;
        let mut lines = None;
        match self.stdin {
            Stdin::None => {}
            Stdin::Bytes => {
                let writer = client.take_writer().expect("the request went out on it");
                tokio::spawn(async move {
                    if let Err(e) = send_stdin(writer).await {
                        eprintln!("pcl: {e:#}");
                    }
                });
            }
            Stdin::Lines => {
                let writer = client.take_writer().expect("the request went out on it");
                lines = Some(tokio::spawn(stream_lines(writer)));
            }
        }
        let mut replies = Replies::new(client, true)?;
        replies.keep_running = self.keep_running;
        Ok(Some(Started { replies, lines }))
    }

    /// Send the request and render its replies with `render`.
    pub(super) async fn run<R>(self, render: impl FnOnce(Replies) -> R) -> anyhow::Result<ExitCode>
    where
        R: Future<Output = anyhow::Result<ExitCode>>,
    {
        match self.start().await? {
            Some(started) => render(started.replies).await,
            None => Ok(ExitCode::SUCCESS),
        }
    }

    /// Start the request as a background job and print its id alone on
    /// stdout. All of stdin goes to the session first (the job keeps a
    /// copy), so the id comes once stdin has ended.
    async fn submit(self) -> anyhow::Result<()> {
        let mut client = connect(&self.session).await?;
        client
            .send(&Request::Async {
                argv: std::env::args().collect(),
                request: Box::new(self.request),
            })
            .await?;
        if self.stdin != Stdin::None {
            let writer = client.take_writer().expect("the request went out on it");
            // The job exists already: its id follows whatever happens
            // here, and its result says what the job made of a cut-off
            // input.
            if let Err(e) = send_stdin(writer).await {
                eprintln!("pcl: {e:#}");
            }
        }
        match client.next().await? {
            Reply::Done => {}
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
        let Some(id) = client.job() else {
            bail!("the session did not name the job")
        };
        writeln!(std::io::stdout(), "{id}")?;
        Ok(())
    }
}

/// Replies of a call, with Ctrl-C turned into an abort of the call's job:
/// the engines are interrupted, what they finished still arrives, and the
/// caller exits with 130. A second Ctrl-C exits at once.
pub(super) struct Replies {
    client: Client,
    sigint: Signal,
    /// False when replaying a finished job: nothing to abort.
    live: bool,
    /// False when `pcl wait` replays a job only for its exit status: an
    /// async `pull --file` then writes no files.
    write_files: bool,
    interrupted: bool,
    abort_sent: bool,
    keep_running: bool,
}

impl Replies {
    fn new(client: Client, live: bool) -> anyhow::Result<Self> {
        Ok(Self {
            client,
            sigint: signal(SignalKind::interrupt())?,
            live,
            write_files: true,
            interrupted: false,
            abort_sent: false,
            keep_running: false,
        })
    }

    /// The replies of a finished job, replayed (`pcl result`); with
    /// `write_files` false, for its exit status only.
    pub(super) fn replay(client: Client, write_files: bool) -> anyhow::Result<Self> {
        let mut replies = Self::new(client, false)?;
        replies.write_files = write_files;
        Ok(replies)
    }

    pub(super) async fn next(&mut self) -> anyhow::Result<Reply> {
        let paths = self.client.paths().clone();
        loop {
            let job = self.client.job();
            let reply = {
                let next = self.client.next_frame();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        reply = &mut next => break reply?,
                        _ = self.sigint.recv() => {
                            if (self.interrupted || !self.live) && !self.keep_running {
                                std::process::exit(INTERRUPTED);
                            }
                            self.interrupted = true;
                            if let Some(job) = job {
                                abort(&paths, job, self.keep_running).await;
                                self.abort_sent = true;
                            }
                        }
                    }
                }
            };
            // Ctrl-C before the daemon named the job: abort it now.
            if self.interrupted && !self.abort_sent {
                if let Some(job) = self.client.job() {
                    abort(&paths, job, self.keep_running).await;
                    self.abort_sent = true;
                }
            }
            if !matches!(reply, Reply::Job(_)) {
                return Ok(reply);
            }
        }
    }

    pub(super) fn interrupted(&self) -> bool {
        self.interrupted
    }

    pub(super) fn writes_files(&self) -> bool {
        self.write_files
    }
}

async fn abort(paths: &SessionPaths, job: u64, keep_running: bool) {
    if keep_running {
        eprintln!("pcl: interrupting");
    } else {
        eprintln!("pcl: interrupting (Ctrl-C again to quit at once)");
    }
    if let Ok(mut client) = Client::connect(paths).await {
        if client.send(&Request::Abort(job)).await.is_ok() {
            while let Ok(reply) = client.next().await {
                if matches!(reply, Reply::Done | Reply::Error(_)) {
                    break;
                }
            }
        }
    }
}

/// Our stdin to the session, in chunks, then the end. Read on a thread of
/// its own: a read blocked on a terminal must not hold up the exit after
/// Ctrl-C (the runtime waits for its own blocking threads). Only a failed
/// read is an error: a session that stopped reading says why in its reply.
async fn send_stdin(mut writer: OwnedWriteHalf) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; CHUNK];
            let read = read_full(&mut stdin, &mut buf).map(|n| {
                buf.truncate(n);
                buf
            });
            let last = !matches!(&read, Ok(buf) if !buf.is_empty());
            if tx.blocking_send(read).is_err() || last {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.context("cannot read stdin")?;
        if chunk.is_empty() {
            break;
        }
        if write_frame(&mut writer, &Request::Chunk(chunk))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    let _ = write_frame(&mut writer, &Request::Eof).await;
    Ok(())
}

/// Stdin's lines as a map's items, in frames of `Vec<ByteBuf>`, then an
/// empty frame. A line holding a NUL byte (no shell string can) ends them;
/// its number is returned.
async fn stream_lines(mut writer: OwnedWriteHalf) -> Option<u64> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut chunk = Vec::with_capacity(LINES_PER_FRAME);
    let mut number = 0;
    loop {
        let mut line = Vec::new();
        let mut n = stdin.read_until(b'\n', &mut line).await.unwrap_or(0);
        number += 1;
        let nul = n > 0 && line.contains(&0);
        if nul {
            n = 0;
        }
        if n > 0 {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            chunk.push(ByteBuf::from(line));
        }
        if (n == 0 && !chunk.is_empty()) || chunk.len() == LINES_PER_FRAME {
            if write_frame(&mut writer, &chunk).await.is_err() {
                return None;
            }
            chunk.clear();
        }
        if n == 0 {
            let _ = write_frame(&mut writer, &Vec::<ByteBuf>::new()).await;
            return nul.then_some(number);
        }
    }
}
