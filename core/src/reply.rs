//! JSON-RPC error replies written into a caller buffer.
//!
//! The id is copied as raw bytes from the request (serde-json-core cannot emit raw
//! JSON); the message is escaped by serde-json-core; `data`, when given, is raw JSON
//! the caller vouches for. Nothing here allocates.

use serde_json_core::ser::to_slice;

/// The buffer was too small for the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyError;

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("reply buffer too small")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ReplyError {}

struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn raw(&mut self, bytes: &[u8]) -> Result<(), ReplyError> {
        let end = self.len.checked_add(bytes.len()).ok_or(ReplyError)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(ReplyError)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReplyError> {
        let rest = self.buf.get_mut(self.len..).ok_or(ReplyError)?;
        self.len += to_slice(value, rest).map_err(|_| ReplyError)?;
        Ok(())
    }
}

/// Writes `{"jsonrpc":"2.0","id":<id>,"error":{"code":…,"message":…[,"data":…]}}` (no
/// newline) into `out` and returns its length. `id` is raw JSON (`None` writes `null`).
pub fn write_error_reply(
    out: &mut [u8],
    id: Option<&[u8]>,
    code: i32,
    message: &str,
    data: Option<&[u8]>,
) -> Result<usize, ReplyError> {
    let mut w = Out { buf: out, len: 0 };
    w.raw(b"{\"jsonrpc\":\"2.0\",\"id\":")?;
    w.raw(id.unwrap_or(b"null"))?;
    w.raw(b",\"error\":{\"code\":")?;
    w.json(&code)?;
    w.raw(b",\"message\":")?;
    w.json(message)?;
    if let Some(data) = data {
        w.raw(b",\"data\":")?;
        w.raw(data)?;
    }
    w.raw(b"}}")?;
    Ok(w.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_raw_id_and_escapes_message() {
        let mut buf = [0u8; 160];
        let n = write_error_reply(&mut buf, Some(br#""a\u0062""#), -32600, "bad \"x\"\n", None)
            .unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"jsonrpc":"2.0","id":"a\u0062","error":{"code":-32600,"message":"bad \"x\"\n"}}"#
        );
        let n = write_error_reply(&mut buf, None, -32700, "Parse error", Some(b"{}")).unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":{}}}"#
        );
        assert_eq!(
            write_error_reply(&mut buf[..10], None, 1, "x", None),
            Err(ReplyError)
        );
    }
}
