//! A relayed bulk stream arrives in pieces cut wherever the network cut
//! them, and is passed on as it came; the local copy needs whole frames
//! again. They are put back together here, in one reused buffer, or taken
//! straight from a piece that holds one whole.

/// Frames of a stream: a 4-byte big-endian length, then that many bytes.
pub(super) struct Frames {
    /// The part of the current frame (its length, then its body) so far.
    partial: Vec<u8>,
    /// The current frame's body length, once its 4 bytes are in.
    body: Option<usize>,
    max: usize,
}

/// A frame longer than the limit: the stream is corrupt.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooLarge(pub(super) usize);

impl Frames {
    pub(super) fn new(max: usize) -> Frames {
        Frames {
            partial: Vec::new(),
            body: None,
            max,
        }
    }

    /// Whether a piece of `len` bytes completes a frame (or may: while
    /// the length is not in yet, it is not known).
    pub(super) fn completes(&self, len: usize) -> bool {
        match self.body {
            Some(body) => len >= body - self.partial.len(),
            None => true,
        }
    }

    /// Take `piece`, handing every frame body it completes to `frame`, in
    /// order. `frame`'s error ends the call.
    pub(super) fn push<E: From<TooLarge>>(
        &mut self,
        mut piece: &[u8],
        mut frame: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !piece.is_empty() {
            match self.body {
                None => {
                    let take = (4 - self.partial.len()).min(piece.len());
                    self.partial.extend_from_slice(&piece[..take]);
                    piece = &piece[take..];
                    if self.partial.len() == 4 {
                        let len =
                            u32::from_be_bytes(self.partial[..4].try_into().expect("4 bytes"));
                        let len = len as usize;
                        if len > self.max {
                            return Err(TooLarge(len).into());
                        }
                        self.partial.clear();
                        self.body = Some(len);
                    }
                }
                // A whole body in the piece: no copy.
                Some(len) if self.partial.is_empty() && piece.len() >= len => {
                    frame(&piece[..len])?;
                    piece = &piece[len..];
                    self.body = None;
                }
                Some(len) => {
                    let take = (len - self.partial.len()).min(piece.len());
                    self.partial.extend_from_slice(&piece[..take]);
                    piece = &piece[take..];
                    if self.partial.len() == len {
                        frame(&self.partial)?;
                        self.partial.clear();
                        self.body = None;
                    }
                }
            }
        }
        // A zero-length body needs no byte after its length.
        if self.body == Some(0) {
            self.body = None;
            frame(&[])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut stream = Vec::new();
        for body in bodies {
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        stream
    }

    fn split_every(stream: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut frames = Frames::new(1 << 20);
        let mut got = Vec::new();
        for piece in stream.chunks(size) {
            frames
                .push(piece, |body| -> Result<(), TooLarge> {
                    got.push(body.to_vec());
                    Ok(())
                })
                .unwrap();
        }
        got
    }

    #[test]
    fn frames_come_back_whole_however_the_stream_is_cut() {
        let bodies: [&[u8]; 4] = [b"hello", b"", &[7u8; 3000], b"end"];
        let stream = framed(&bodies);
        for size in [1, 2, 3, 4, 5, 7, 100, 4096, stream.len()] {
            assert_eq!(split_every(&stream, size), bodies, "pieces of {size}");
        }
    }

    #[test]
    fn a_piece_completes_a_frame_only_with_the_rest_of_its_body() {
        let mut frames = Frames::new(1 << 20);
        let stream = framed(&[&[1u8; 100]]);
        let mut got = 0;
        frames
            .push(&stream[..50], |_| -> Result<(), TooLarge> { Ok(()) })
            .unwrap();
        assert!(!frames.completes(53));
        assert!(frames.completes(54));
        frames
            .push(&stream[50..], |_| -> Result<(), TooLarge> {
                got += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(got, 1);
        assert!(frames.completes(1), "a new frame's length is not known yet");
    }

    #[test]
    fn a_frame_over_the_limit_is_refused() {
        let mut frames = Frames::new(10);
        let stream = framed(&[&[0u8; 11]]);
        let result = frames.push(&stream, |_| -> Result<(), TooLarge> { Ok(()) });
        assert_eq!(result, Err(TooLarge(11)));
    }
}
