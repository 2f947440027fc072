//! Where a map's items come from. A task reads them ahead into a small
//! channel, so input is read only as fast as engines take it.

use std::path::PathBuf;

use serde_bytes::ByteBuf;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;

use super::MapInput;
use crate::protocol::data::{self, open_regular};
use crate::session::SessionError;
use crate::transport::read_frame;

/// Items read ahead of the engines, at most.
const READ_AHEAD: usize = 4096;

pub(super) struct Input {
    pub items: mpsc::Receiver<Result<Vec<u8>, String>>,
    /// The item count, when it is known up front.
    pub total: Option<u64>,
}

impl Input {
    pub(super) async fn open(
        input: MapInput,
        socket: Option<OwnedReadHalf>,
    ) -> Result<Self, SessionError> {
        let (tx, items) = mpsc::channel(READ_AHEAD);
        let total = match input {
            MapInput::Items(list) => {
                let total = list.len() as u64;
                tokio::spawn(async move {
                    for item in list {
                        if tx.send(Ok(item.into_vec())).await.is_err() {
                            return;
                        }
                    }
                });
                Some(total)
            }
            MapInput::File { path, remove } => {
                let file = open_regular(&path)
                    .map(tokio::fs::File::from_std)
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                let total = count_lines(path.clone()).await;
                tokio::spawn(async move {
                    read_lines(BufReader::new(file), &tx).await;
                    if remove {
                        let _ = std::fs::remove_file(&path);
                    }
                });
                total
            }
            MapInput::Stream => {
                let mut socket = socket.ok_or_else(|| {
                    std::io::Error::other("streamed input needs the caller's connection")
                })?;
                tokio::spawn(async move {
                    loop {
                        match read_frame::<_, Vec<ByteBuf>>(&mut socket).await {
                            Ok(Some(chunk)) if !chunk.is_empty() => {
                                for item in chunk {
                                    if tx.send(Ok(item.into_vec())).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Ok(_) => return,
                            Err(e) => {
                                let _ = tx.send(Err(e.to_string())).await;
                                return;
                            }
                        }
                    }
                });
                None
            }
        };
        Ok(Self { items, total })
    }
}

/// Each line is an item, without its newline; a last line without one
/// still counts.
async fn read_lines<R: tokio::io::AsyncBufRead + Unpin>(
    mut reader: R,
    tx: &mpsc::Sender<Result<Vec<u8>, String>>,
) {
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                return;
            }
        }
    }
}

/// Lines in a file, for the progress bar.
async fn count_lines(path: PathBuf) -> Option<u64> {
    tokio::task::spawn_blocking(move || {
        Some(
            data::count_lines(&mut open_regular(&path).ok()?)
                .ok()?
                .lines,
        )
    })
    .await
    .ok()
    .flatten()
}
