//! Proof that framing, validation, scanning, tool_call extraction, batch iteration and
//! reply writing never allocate: a counting global allocator sees zero allocations
//! made by this thread while they run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use thoth_core::frame::Frame;
use thoth_core::{Frames, LineFramer, Message, scan, tool_call, validate, write_error_reply};

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: delegates every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const STREAM: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}\r\n\
\n\
{\"jsonrpc\":\"2.0\",\"id\":\"a\\u0062\",\"method\":\"tools\\/call\",\"params\":{\"name\":\"re\\u0061d\",\"arguments\":{\"p\":\"\xC3\xA9\\n\"},\"_meta\":{\"progressToken\":3}}}\n\
[{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}},{\"jsonrpc\":\"2.0\",\"Method\":\"x\",\"id\":3},7]\n\
{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[]}}\n\
{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"method\":\"x\",\"id\":5}\n\
this line is far too long for the limit of this framer, so it is dropped whole ..........................................................................................................................................................................................................................\n\
{not json\n\
{\"jsonrpc\":\"2.0\",\r\"method\":\"n\",\"params\":{\"t\":\"\xE2\x80\xA8\xC2\x85\"}}\n\
{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";

#[test]
fn the_core_never_allocates() {
    let mut reply = [0u8; 512];
    let mut seen = 0usize;
    let before = ALLOCATIONS.with(Cell::get);

    for frame in Frames::new(STREAM, 200) {
        let Frame::Line { bytes, .. } = frame else {
            seen += 1;
            continue;
        };
        let _ = validate(bytes);
        // The canonical line and the lax check of server lines.
        seen += usize::from(thoth_core::needs_rewrite(bytes));
        let rewrites = thoth_core::write_canonical(bytes, |piece| seen += piece.len());
        seen += rewrites.carriage_returns as usize;
        let mut rewriter = thoth_core::LineRewriter::new();
        for half in bytes.chunks(7) {
            rewriter.feed(half, |piece| seen += piece.len());
        }
        let _ = rewriter.finish(|piece| seen += piece.len());
        let mut lax = thoth_core::LaxLine::new();
        for half in bytes.chunks(5) {
            let _ = lax.feed(half);
        }
        seen += usize::from(lax.finish().is_ok());
        seen += usize::from(thoth_core::check_line(bytes).is_ok());
        match scan(bytes) {
            Ok(Message::Request(call)) => {
                if let Ok(tc) = tool_call(&call) {
                    seen += tc.name.len();
                }
                let id = call.id().map(|id| id.raw);
                seen +=
                    write_error_reply(&mut reply, id, -32001, "Blocked \"x\"", None).unwrap_or(0);
            }
            Ok(Message::Batch(batch)) => {
                for element in batch.elements() {
                    if let Ok(Message::Request(call)) = element {
                        seen += tool_call(&call).map(|tc| tc.name.len()).unwrap_or(0);
                    }
                    seen += 1;
                }
            }
            Ok(_) => seen += 1,
            Err(e) => seen += e.kind.as_str().len(),
        }
    }
    // The incremental framer, fed one byte at a time from a fixed buffer.
    let mut framer = LineFramer::new(200);
    let mut buf = [0u8; 256];
    let mut len = 0usize;
    for &byte in STREAM {
        buf[len] = byte;
        len += 1;
        loop {
            let step = framer.step(&buf[..len]);
            let consumed = match step {
                thoth_core::FrameStep::Frame { consumed, .. }
                | thoth_core::FrameStep::Oversized { consumed, .. } => consumed,
                thoth_core::FrameStep::NeedMore { consumed } => {
                    buf.copy_within(consumed..len, 0);
                    len -= consumed;
                    break;
                }
            };
            seen += 1;
            buf.copy_within(consumed..len, 0);
            len -= consumed;
        }
    }

    let after = ALLOCATIONS.with(Cell::get);
    assert!(seen > 20, "the work above really ran ({seen})");
    assert_eq!(after - before, 0, "allocations inside the core");
    // The counter works: a Box is seen.
    let boxed = std::hint::black_box(Box::new(1u8));
    assert_eq!(ALLOCATIONS.with(Cell::get) - after, 1);
    drop(boxed);
}
