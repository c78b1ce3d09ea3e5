//! Newline framing with a bounded frame length, in the manner of tokio-util's
//! `LinesCodec`: the framer remembers how far it has searched, so bytes are looked at
//! once however the stream is chunked.
//!
//! The caller owns the buffer. It passes the unconsumed bytes to [`LineFramer::step`]
//! and drops the `consumed` prefix the step reports. An oversized line is never
//! buffered: the framer tells the caller to drop its bytes as they arrive and reports
//! the line once, with its length, when the next `\n` resynchronises the stream. A `\r`
//! before `\n` is stripped; lines holding only spaces, tabs or `\r` are skipped.
//!
//! Only `\n` ends a frame here. Readers that also end lines at a bare `\r`, U+2028,
//! U+2029 or U+0085 would cut some valid frames in more places than this framer does,
//! so no frame is forwarded as it was framed: thoth writes its *canonical line*
//! ([`crate::canon`]), in which none of those bytes is left, and every reader then
//! sees the one frame this framer saw, with the same value.

use crate::rpc::Span;

/// What one call of [`LineFramer::step`] or [`LineFramer::finish`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStep {
    /// A complete frame at `frame` (relative to the slice passed in). Handle it, then
    /// drop `consumed` bytes from the front of the buffer.
    Frame {
        /// Where the frame lies in the slice passed in (no `\r\n`).
        frame: Span,
        /// How many bytes to drop from the front once the frame is handled.
        consumed: usize,
    },
    /// A line longer than the limit ended (or the stream did). Its bytes are gone.
    Oversized {
        /// The length of the dropped line, terminator included.
        dropped: u64,
        /// How many bytes to drop from the front of the buffer.
        consumed: usize,
    },
    /// No complete frame yet: drop `consumed` bytes (skipped blank lines or the body of
    /// an oversized line), then read more.
    NeedMore {
        /// How many bytes to drop from the front of the buffer.
        consumed: usize,
    },
}

/// A newline framer with a maximum frame length.
#[derive(Clone, Debug)]
pub struct LineFramer {
    max_frame_len: usize,
    /// Bytes at the front of the buffer already searched for `\n`.
    searched: usize,
    /// Bytes of the current oversized line dropped so far, when discarding.
    discarding: Option<u64>,
}

impl LineFramer {
    /// A framer that accepts frames of at most `max_frame_len` bytes (without `\r\n`).
    pub const fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            searched: 0,
            discarding: None,
        }
    }

    /// The largest frame this framer yields.
    pub const fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Looks for the next frame in `buf`, the caller's unconsumed bytes.
    pub fn step(&mut self, buf: &[u8]) -> FrameStep {
        let mut base = 0usize;
        loop {
            let rest = buf.get(base..).unwrap_or_default();
            if let Some(dropped) = self.discarding {
                return match memchr::memchr(b'\n', rest) {
                    Some(nl) => {
                        self.discarding = None;
                        FrameStep::Oversized {
                            dropped: dropped.saturating_add(nl as u64 + 1),
                            consumed: base + nl + 1,
                        }
                    }
                    None => {
                        self.discarding = Some(dropped.saturating_add(rest.len() as u64));
                        FrameStep::NeedMore {
                            consumed: buf.len(),
                        }
                    }
                };
            }
            let from = self.searched.min(rest.len());
            match memchr::memchr(b'\n', rest.get(from..).unwrap_or_default()) {
                Some(found) => {
                    self.searched = 0;
                    let nl = from + found;
                    let line = rest.get(..nl).unwrap_or_default();
                    let content = line.strip_suffix(b"\r").unwrap_or(line);
                    if content.len() > self.max_frame_len {
                        return FrameStep::Oversized {
                            dropped: nl as u64 + 1,
                            consumed: base + nl + 1,
                        };
                    }
                    if is_blank(content) {
                        base += nl + 1;
                        continue;
                    }
                    return FrameStep::Frame {
                        frame: Span::new(base, base + content.len()),
                        consumed: base + nl + 1,
                    };
                }
                None => {
                    // One byte of slack: the line may still end in "\r\n".
                    if rest.len() > self.max_frame_len.saturating_add(1) {
                        self.searched = 0;
                        self.discarding = Some(rest.len() as u64);
                        return FrameStep::NeedMore {
                            consumed: buf.len(),
                        };
                    }
                    self.searched = rest.len();
                    return FrameStep::NeedMore { consumed: base };
                }
            }
        }
    }

    /// Called at end of stream, after `step` has returned `NeedMore`: yields the final
    /// unterminated frame, if any, and resets the framer.
    pub fn finish(&mut self, buf: &[u8]) -> FrameStep {
        self.searched = 0;
        if let Some(dropped) = self.discarding.take() {
            return FrameStep::Oversized {
                dropped: dropped.saturating_add(buf.len() as u64),
                consumed: buf.len(),
            };
        }
        let content = buf.strip_suffix(b"\r").unwrap_or(buf);
        if is_blank(content) {
            FrameStep::NeedMore {
                consumed: buf.len(),
            }
        } else if content.len() > self.max_frame_len {
            FrameStep::Oversized {
                dropped: buf.len() as u64,
                consumed: buf.len(),
            }
        } else {
            FrameStep::Frame {
                frame: Span::new(0, content.len()),
                consumed: buf.len(),
            }
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// One item of [`Frames`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame's bytes (no terminator) and its offset in the input.
    Line {
        /// The frame.
        bytes: &'a [u8],
        /// Its offset in the input.
        offset: usize,
    },
    /// A line longer than the limit, with its length.
    Oversized {
        /// Bytes dropped, terminator included.
        dropped: u64,
    },
}

/// Frames of a complete input held in one slice (files, tests, `no_std` callers).
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    input: &'a [u8],
    pos: usize,
    framer: LineFramer,
    finished: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `input`, each at most `max_frame_len` bytes.
    pub const fn new(input: &'a [u8], max_frame_len: usize) -> Self {
        Self {
            input,
            pos: 0,
            framer: LineFramer::new(max_frame_len),
            finished: false,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        loop {
            if self.finished {
                return None;
            }
            let mut rest = self.input.get(self.pos..).unwrap_or_default();
            let step = match self.framer.step(rest) {
                FrameStep::NeedMore { consumed } => {
                    self.finished = true;
                    self.pos += consumed;
                    rest = rest.get(consumed..).unwrap_or_default();
                    self.framer.finish(rest)
                }
                step => step,
            };
            let base = self.pos;
            match step {
                FrameStep::Frame { frame, consumed } => {
                    self.pos += consumed;
                    let bytes = rest.get(frame.start..frame.end).unwrap_or_default();
                    return Some(Frame::Line {
                        bytes,
                        offset: base + frame.start,
                    });
                }
                FrameStep::Oversized { dropped, consumed } => {
                    self.pos += consumed;
                    return Some(Frame::Oversized { dropped });
                }
                FrameStep::NeedMore { consumed } => self.pos += consumed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> heapless::Vec<(usize, usize, u64), 16> {
        let mut out = heapless::Vec::new();
        for f in Frames::new(input, max) {
            let row = match f {
                Frame::Line { bytes, offset } => (offset, bytes.len(), 0),
                Frame::Oversized { dropped } => (0, 0, dropped),
            };
            out.push(row).unwrap();
        }
        out
    }

    #[test]
    fn table() {
        // (input, max frame length, frames as (offset, length, dropped bytes))
        type Row<'a> = (&'a [u8], usize, &'a [(usize, usize, u64)]);
        let cases: &[Row<'_>] = &[
            (b"", 10, &[]),
            (b"\n\n\r\n  \n", 10, &[]),
            (b"abc\n", 10, &[(0, 3, 0)]),
            (b"abc\r\nde", 10, &[(0, 3, 0), (5, 2, 0)]),
            (b"abc\r", 10, &[(0, 3, 0)]),
            (b"\n\nabc\n", 10, &[(2, 3, 0)]),
            (b"0123456789\n", 10, &[(0, 10, 0)]),
            (b"0123456789\r\n", 10, &[(0, 10, 0)]),
            (b"0123456789a\nok\n", 10, &[(0, 0, 12), (12, 2, 0)]),
            (b"0123456789abcdef", 10, &[(0, 0, 16)]),
            (b"a\r\rb\n", 10, &[(0, 4, 0)]),
        ];
        for (input, max, want) in cases {
            assert_eq!(collect(input, *max).as_slice(), *want, "input {input:?}");
        }
    }

    #[test]
    fn remembers_how_far_it_searched_and_never_buffers_oversize() {
        let mut f = LineFramer::new(4);
        assert_eq!(f.step(b"ab"), FrameStep::NeedMore { consumed: 0 });
        assert_eq!(f.searched, 2);
        assert_eq!(f.step(b"abc"), FrameStep::NeedMore { consumed: 0 });
        // six bytes without a newline: too long, drop everything from now on.
        assert_eq!(f.step(b"abcdef"), FrameStep::NeedMore { consumed: 6 });
        assert_eq!(f.step(b"ghi"), FrameStep::NeedMore { consumed: 3 });
        assert_eq!(
            f.step(b"j\nok\n"),
            FrameStep::Oversized {
                dropped: 11,
                consumed: 2
            }
        );
        assert_eq!(
            f.step(b"ok\n"),
            FrameStep::Frame {
                frame: Span::new(0, 2),
                consumed: 3
            }
        );
    }
}
