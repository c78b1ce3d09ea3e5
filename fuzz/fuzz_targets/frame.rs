//! The incremental framer yields the same frames as framing the whole input, for any
//! chunking, and never holds more than one frame's worth of bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_core::frame::Frame;
use thoth_core::{FrameStep, Frames, LineFramer};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let max = usize::from(control & 0x1F) + 1;
    let chunk = usize::from(control >> 5) + 1;
    let whole: Vec<Result<&[u8], u64>> = Frames::new(stream, max)
        .map(|f| match f {
            Frame::Line { bytes, .. } => Ok(bytes),
            Frame::Oversized { dropped } => Err(dropped),
        })
        .collect();

    let mut framer = LineFramer::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut got: Vec<Result<Vec<u8>, u64>> = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match framer.step(&buf) {
                FrameStep::Frame { frame, consumed } => {
                    got.push(Ok(frame.of(&buf).to_vec()));
                    buf.drain(..consumed);
                }
                FrameStep::Oversized { dropped, consumed } => {
                    got.push(Err(dropped));
                    buf.drain(..consumed);
                }
                FrameStep::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    break;
                }
            }
        }
        assert!(buf.len() <= max + 1);
    }
    match framer.finish(&buf) {
        FrameStep::Frame { frame, .. } => got.push(Ok(frame.of(&buf).to_vec())),
        FrameStep::Oversized { dropped, .. } => got.push(Err(dropped)),
        FrameStep::NeedMore { .. } => {}
    }
    let whole: Vec<Result<Vec<u8>, u64>> = whole.into_iter().map(|r| r.map(<[u8]>::to_vec)).collect();
    assert_eq!(got, whole);
});
