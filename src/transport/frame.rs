//! Frames: a 4-byte big-endian length, then a postcard-encoded value.
//! Used both on QUIC streams and on the session's Unix socket.

use std::pin::Pin;

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::TransportError;

/// Large enough for a chunk of bulk data plus its header; anything bigger
/// is a corrupt or hostile peer, refused before allocating.
pub const MAX_FRAME: usize = 16 << 20;

pub async fn write_frame<W, T>(writer: &mut W, value: &T) -> Result<(), TransportError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    writer.write_all(&encode_frame(value)?).await?;
    Ok(())
}

/// A frame as bytes, for writing the same frame to several peers.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, TransportError> {
    let mut buf = Vec::new();
    encode_frame_into(value, &mut buf)?;
    Ok(buf)
}

/// Append a frame to `buf`, for many small frames sent in one write;
/// on error `buf` is as it was.
pub fn encode_frame_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), TransportError> {
    let start = buf.len();
    // The length goes in front of the body once it is known.
    buf.extend_from_slice(&[0; 4]);
    if let Err(e) = postcard::serialize_with_flavor(value, Appending(buf)) {
        buf.truncate(start);
        return Err(e.into());
    }
    let len = buf.len() - start - 4;
    if len > MAX_FRAME {
        buf.truncate(start);
        return Err(TransportError::FrameTooLarge(len));
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// postcard's output appended to a buffer the caller keeps.
struct Appending<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Appending<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<Option<T>, TransportError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = body_len(len)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

/// The next frame if `reader` already holds all of it, without reading
/// (and so without waiting): a caller can take a burst of frames that came
/// together, and tell where it ends.
pub fn take_buffered_frame<R, T>(reader: &mut BufReader<R>) -> Option<Result<T, TransportError>>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let held = reader.buffer();
    let len = match body_len(held.get(..4)?.try_into().ok()?) {
        Ok(len) => len,
        Err(e) => return Some(Err(e)),
    };
    let value = decode(held.get(4..4 + len)?);
    Pin::new(reader).consume(4 + len);
    Some(value)
}

/// The body's length a frame's header says, if it is one we take.
fn body_len(header: [u8; 4]) -> Result<usize, TransportError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(TransportError::FrameTooLarge(len));
    }
    Ok(len)
}

/// Decode one frame's body. Whatever the bytes, this returns an error
/// rather than panicking or allocating beyond the body's size; the fuzz
/// target in `fuzz/` holds it to that.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, TransportError> {
    Ok(postcard::from_bytes(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_refuse_oversized() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &(7u32, "hi".to_string()))
            .await
            .unwrap();
        let got: Option<(u32, String)> = read_frame(&mut b).await.unwrap();
        assert_eq!(got, Some((7, "hi".to_string())));

        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = read_frame::<_, (u32, String)>(&mut b).await.unwrap_err();
        assert!(matches!(err, TransportError::FrameTooLarge(_)));

        drop(a);
        assert_eq!(read_frame::<_, u32>(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn frames_already_buffered_are_taken_without_waiting() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut burst = Vec::new();
        for n in 1..=3u32 {
            encode_frame_into(&n, &mut burst).unwrap();
        }
        let partial = encode_frame(&4u32).unwrap();
        burst.extend_from_slice(&partial[..partial.len() - 1]);
        a.write_all(&burst).await.unwrap();
        let mut b = BufReader::new(b);
        // The first read takes in the whole burst.
        assert_eq!(read_frame::<_, u32>(&mut b).await.unwrap(), Some(1));
        assert_eq!(take_buffered_frame::<_, u32>(&mut b).unwrap().unwrap(), 2);
        assert_eq!(take_buffered_frame::<_, u32>(&mut b).unwrap().unwrap(), 3);
        assert!(
            take_buffered_frame::<_, u32>(&mut b).is_none(),
            "a frame not all here is left for a read"
        );
        a.write_all(&partial[partial.len() - 1..]).await.unwrap();
        assert_eq!(read_frame::<_, u32>(&mut b).await.unwrap(), Some(4));
    }
}
