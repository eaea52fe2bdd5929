//! A quorum queue's snapshot as openraft moves it: a file being received, or, to send, the
//! pieces of a snapshot read one after the other as if they were one file (a few bytes of
//! head, then ranges of files on disk). Sending a deep queue's snapshot then reads its
//! segments where they lie instead of first copying them all into one file, which held up
//! the queue's state machine for as long as the copy took.

use bytes::Bytes;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A snapshot's data.
pub enum SnapshotData {
    /// A file: one being received, or one that holds a whole snapshot.
    File(tokio::fs::File),
    /// Pieces read as one file, to send (not written to).
    Pieces(Pieces),
}

/// One piece of [`Pieces`].
pub enum Piece {
    Bytes(Bytes),
    /// The first `len` bytes of a file.
    File {
        file: tokio::fs::File,
        len: u64,
    },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

/// Pieces read one after the other as one file.
pub struct Pieces {
    pieces: Vec<Piece>,
    /// Where each piece starts.
    starts: Vec<u64>,
    len: u64,
    pos: u64,
    /// Where each file piece's own cursor is (`None`: not known, or a seek is under way).
    cursors: Vec<Option<u64>>,
    /// A seek started on this piece and not yet complete.
    seeking: Option<usize>,
}

impl Pieces {
    pub fn new(pieces: Vec<Piece>) -> Pieces {
        let mut starts = Vec::with_capacity(pieces.len());
        let mut len = 0;
        for p in &pieces {
            starts.push(len);
            len += p.len();
        }
        let cursors = pieces
            .iter()
            .map(|p| matches!(p, Piece::File { .. }).then_some(0))
            .collect();
        Pieces {
            pieces,
            starts,
            len,
            pos: 0,
            cursors,
            seeking: None,
        }
    }

    /// The piece `pos` falls in, and how far into it.
    fn locate(&self) -> Option<(usize, u64)> {
        if self.pos >= self.len {
            return None;
        }
        let i = self.starts.partition_point(|s| *s <= self.pos) - 1;
        Some((i, self.pos - self.starts[i]))
    }

    fn poll_read_here(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some((i, off)) = self.locate() else {
            return Poll::Ready(Ok(()));
        };
        let room = (self.pieces[i].len() - off).min(buf.remaining() as u64) as usize;
        if room == 0 {
            return Poll::Ready(Ok(()));
        }
        let n = match &mut self.pieces[i] {
            Piece::Bytes(b) => {
                let at = off as usize;
                buf.put_slice(&b[at..at + room]);
                room
            }
            Piece::File { file, .. } => {
                // A seek left under way by a read given up is completed first; then the file
                // is sought where this read needs it, if it is not there.
                while self.cursors[i] != Some(off) {
                    if self.seeking != Some(i) {
                        Pin::new(&mut *file).start_seek(SeekFrom::Start(off))?;
                        self.seeking = Some(i);
                        self.cursors[i] = None;
                    }
                    let at = ready!(Pin::new(&mut *file).poll_complete(cx))?;
                    self.seeking = None;
                    self.cursors[i] = Some(at);
                }
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(room));
                ready!(Pin::new(&mut *file).poll_read(cx, &mut part))?;
                let n = part.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(io::Error::other(
                        "a snapshot file shrank while it was sent",
                    )));
                }
                // `part` filled the start of `buf`'s unfilled room, initialized above.
                buf.advance(n);
                self.cursors[i] = Some(off + n as u64);
                n
            }
        };
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_read(cx, buf),
            SnapshotData::Pieces(p) => p.poll_read_here(cx, buf),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).start_seek(to),
            SnapshotData::Pieces(p) => {
                let pos = match to {
                    SeekFrom::Start(n) => Some(n),
                    SeekFrom::End(d) => p.len.checked_add_signed(d),
                    SeekFrom::Current(d) => p.pos.checked_add_signed(d),
                };
                p.pos = pos.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "a seek before the start")
                })?;
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_complete(cx),
            SnapshotData::Pieces(p) => Poll::Ready(Ok(p.pos)),
        }
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a snapshot being sent is not written to",
    )
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_write(cx, buf),
            SnapshotData::Pieces(_) => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_flush(cx),
            SnapshotData::Pieces(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_shutdown(cx),
            SnapshotData::Pieces(_) => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    /// Read in chunks from any offset, as openraft sends a snapshot, the pieces give what
    /// their concatenation holds.
    #[tokio::test]
    async fn pieces_read_as_the_file_they_make() {
        let dir = std::env::temp_dir().join(format!("warren-pieces-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..7_000u32).map(|i| (i % 13) as u8).collect();
        std::fs::write(dir.join("a"), &a).unwrap();
        // Longer than the piece says: only the first 5,000 bytes count.
        std::fs::write(dir.join("b"), &b).unwrap();
        let open = |name: &str| {
            let f = std::fs::File::open(dir.join(name)).unwrap();
            tokio::fs::File::from_std(f)
        };
        let mut want = b"head".to_vec();
        want.extend_from_slice(&a);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&b[..5_000]);
        let mut data = SnapshotData::Pieces(Pieces::new(vec![
            Piece::Bytes(Bytes::from_static(b"head")),
            Piece::File {
                file: open("a"),
                len: a.len() as u64,
            },
            Piece::Bytes(Bytes::from_static(b"mid")),
            Piece::File {
                file: open("b"),
                len: 5_000,
            },
        ]));
        assert_eq!(
            data.seek(SeekFrom::End(0)).await.unwrap(),
            want.len() as u64
        );
        // Backwards and forwards, in odd chunks, as a resend after a lost chunk would.
        for (offset, chunk) in [(0, 3), (3, 1_000), (9_000, 2_000), (2, 17), (10_005, 5_002)] {
            data.seek(SeekFrom::Start(offset)).await.unwrap();
            let mut got = vec![0; chunk];
            data.read_exact(&mut got).await.unwrap();
            assert_eq!(
                got,
                want[offset as usize..offset as usize + chunk],
                "at {offset}"
            );
        }
        data.seek(SeekFrom::Start(0)).await.unwrap();
        let mut all = Vec::new();
        data.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
