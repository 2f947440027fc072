//! QUIC over a byte stream: the datagrams a UDP socket would carry,
//! length-prefixed, over the ssh channel an engine host was started on.
//! quinn takes it as its socket, so the pinned TLS, the connection and
//! every stream above it are the same on either path. The stream is
//! reliable and ordered, so nothing is lost on it; when its writer falls
//! behind, sends wait (`WouldBlock`) as on a full socket buffer.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// The address each end gives the other: a label, never dialled. quinn
/// refuses an unspecified address or port 0, so it is loopback port 1.
pub(super) const CHANNEL_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 1);

/// The largest datagram over the channel. No network fragments it, so
/// packets larger than a LAN's MTU cost fewer per-packet steps.
pub(super) const CHANNEL_MTU: u16 = 16 * 1024;

/// Bytes waiting for the writer before sends wait: a few packets' worth
/// of batching, a bounded amount of memory.
const OUTBOUND_LIMIT: usize = 1 << 20;
/// Datagrams read but not yet taken by quinn before the reader waits.
const INBOUND_DATAGRAMS: usize = 1024;
/// Datagrams quinn may hand over in one send.
const SEGMENTS_PER_SEND: usize = 16;

/// What the writer has to write, and who waits for room.
#[derive(Default)]
struct Outbound {
    frames: Vec<u8>,
    waiting: Vec<Waker>,
    closed: bool,
}

/// The socket half quinn drives. Reading and writing the byte streams
/// happen in two tasks of their own.
pub struct ChannelSocket {
    inbound: Mutex<mpsc::Receiver<Vec<u8>>>,
    outbound: Arc<Mutex<Outbound>>,
    wake_writer: Arc<Notify>,
}

impl fmt::Debug for ChannelSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelSocket")
    }
}

/// Closes the channel's writing side when dropped: over ssh that is the
/// engine host's stdin, so its end is the tether's.
pub struct ChannelClose {
    _signal: oneshot::Sender<()>,
}

/// The channel's ends, as the tasks that carry it see them.
pub struct Channel {
    pub socket: Arc<ChannelSocket>,
    /// Drop it to close the writing side.
    pub close: ChannelClose,
    /// Turns true once the reading side reached its end (or failed).
    pub ended: watch::Receiver<bool>,
}

impl Channel {
    /// Carry datagrams over `reader` and `writer`; must run inside a tokio
    /// runtime.
    pub fn spawn<R, W>(reader: R, writer: W) -> Channel
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_DATAGRAMS);
        let outbound = Arc::new(Mutex::new(Outbound::default()));
        let wake_writer = Arc::new(Notify::new());
        let (close_tx, close_rx) = oneshot::channel();
        let (ended_tx, ended) = watch::channel(false);
        tokio::spawn(read_frames(reader, inbound_tx, ended_tx));
        tokio::spawn(write_frames(
            writer,
            outbound.clone(),
            wake_writer.clone(),
            close_rx,
        ));
        Channel {
            socket: Arc::new(ChannelSocket {
                inbound: Mutex::new(inbound_rx),
                outbound,
                wake_writer,
            }),
            close: ChannelClose { _signal: close_tx },
            ended,
        }
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: R,
    inbound: mpsc::Sender<Vec<u8>>,
    ended: watch::Sender<bool>,
) {
    let mut len = [0u8; 2];
    loop {
        if reader.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut datagram = vec![0u8; u16::from_be_bytes(len).into()];
        if reader.read_exact(&mut datagram).await.is_err() || inbound.send(datagram).await.is_err()
        {
            break;
        }
    }
    let _ = ended.send(true);
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    outbound: Arc<Mutex<Outbound>>,
    wake: Arc<Notify>,
    mut close: oneshot::Receiver<()>,
) {
    let mut batch = Vec::new();
    loop {
        {
            let mut out = outbound.lock().expect("outbound lock");
            std::mem::swap(&mut batch, &mut out.frames);
            for waker in out.waiting.drain(..) {
                waker.wake();
            }
        }
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = &mut close => break,
            }
        }
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            break;
        }
        batch.clear();
    }
    {
        // Whatever waits to send learns the channel is gone.
        let mut out = outbound.lock().expect("outbound lock");
        out.closed = true;
        for waker in out.waiting.drain(..) {
            waker.wake();
        }
    }
    let _ = writer.shutdown().await;
}

impl ChannelSocket {
    fn poll_room(&self, cx: &mut Context) -> Poll<io::Result<()>> {
        let mut out = self.outbound.lock().expect("outbound lock");
        if out.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if out.frames.len() < OUTBOUND_LIMIT {
            return Poll::Ready(Ok(()));
        }
        out.waiting.push(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncUdpSocket for ChannelSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(RoomPoller(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let mut out = self.outbound.lock().expect("outbound lock");
        if out.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if out.frames.len() >= OUTBOUND_LIMIT {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let segment = transmit.segment_size.unwrap_or(transmit.contents.len());
        for datagram in transmit.contents.chunks(segment.max(1)) {
            out.frames
                .extend_from_slice(&(datagram.len() as u16).to_be_bytes());
            out.frames.extend_from_slice(datagram);
        }
        drop(out);
        self.wake_writer.notify_one();
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbound = self.inbound.lock().expect("inbound lock");
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let next = if filled == 0 {
                match inbound.poll_recv(cx) {
                    Poll::Ready(next) => next,
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                inbound.try_recv().ok()
            };
            let Some(datagram) = next else { break };
            let len = datagram.len().min(bufs[filled].len());
            bufs[filled][..len].copy_from_slice(&datagram[..len]);
            meta[filled] = RecvMeta {
                addr: CHANNEL_PEER,
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            filled += 1;
        }
        if filled == 0 {
            // The reading side ended: the channel is gone for good.
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(filled))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(CHANNEL_PEER)
    }

    fn max_transmit_segments(&self) -> usize {
        SEGMENTS_PER_SEND
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// Ready when the writer has room again.
struct RoomPoller(Arc<ChannelSocket>);

impl fmt::Debug for RoomPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomPoller")
    }
}

impl UdpPoller for RoomPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.poll_room(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[tokio::test]
    async fn datagrams_cross_a_byte_stream_whole_and_in_order() {
        let (a, b) = tokio::io::duplex(64);
        let (a_read, a_write) = tokio::io::split(a);
        let (b_read, b_write) = tokio::io::split(b);
        let left = Channel::spawn(a_read, a_write);
        let right = Channel::spawn(b_read, b_write);
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + i as usize * 7]).collect();
        for p in &payloads {
            left.socket
                .try_send(&Transmit {
                    destination: CHANNEL_PEER,
                    ecn: None,
                    contents: p,
                    segment_size: None,
                    src_ip: None,
                })
                .unwrap();
        }
        let mut got = VecDeque::new();
        while got.len() < payloads.len() {
            let mut buf = vec![0u8; 2000];
            let mut meta = [RecvMeta::default()];
            let n = std::future::poll_fn(|cx| {
                let mut bufs = [IoSliceMut::new(&mut buf)];
                right.socket.poll_recv(cx, &mut bufs, &mut meta)
            })
            .await
            .unwrap();
            assert_eq!(n, 1);
            assert_eq!(meta[0].addr, CHANNEL_PEER);
            got.push_back(buf[..meta[0].len].to_vec());
        }
        assert_eq!(Vec::from(got), payloads);
    }

    #[tokio::test]
    async fn a_segmented_send_arrives_as_separate_datagrams() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (a_read, a_write) = tokio::io::split(a);
        let (b_read, b_write) = tokio::io::split(b);
        let left = Channel::spawn(a_read, a_write);
        let right = Channel::spawn(b_read, b_write);
        let contents: Vec<u8> = (0..250u8).collect();
        left.socket
            .try_send(&Transmit {
                destination: CHANNEL_PEER,
                ecn: None,
                contents: &contents,
                segment_size: Some(100),
                src_ip: None,
            })
            .unwrap();
        let mut lens = Vec::new();
        while lens.iter().sum::<usize>() < contents.len() {
            let mut buf = vec![0u8; 200];
            let mut meta = [RecvMeta::default()];
            std::future::poll_fn(|cx| {
                let mut bufs = [IoSliceMut::new(&mut buf)];
                right.socket.poll_recv(cx, &mut bufs, &mut meta)
            })
            .await
            .unwrap();
            lens.push(meta[0].len);
        }
        assert_eq!(lens, [100, 100, 50]);
    }

    #[tokio::test]
    async fn closing_one_end_ends_the_other_and_fails_its_sends() {
        let (a, b) = tokio::io::duplex(64);
        let (a_read, a_write) = tokio::io::split(a);
        let (b_read, b_write) = tokio::io::split(b);
        let left = Channel::spawn(a_read, a_write);
        let mut right = Channel::spawn(b_read, b_write);
        drop(left.close);
        right.ended.wait_for(|&ended| ended).await.unwrap();
        let mut buf = vec![0u8; 10];
        let mut meta = [RecvMeta::default()];
        let got = std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            right.socket.poll_recv(cx, &mut bufs, &mut meta)
        })
        .await;
        assert!(got.is_err());
        drop(right.close);
        // The writer notices its close and refuses further sends.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let sent = right.socket.try_send(&Transmit {
                    destination: CHANNEL_PEER,
                    ecn: None,
                    contents: b"x",
                    segment_size: None,
                    src_ip: None,
                });
                if sent.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }
}
