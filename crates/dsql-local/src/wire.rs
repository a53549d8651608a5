//! The PostgreSQL v3 wire protocol as the gateway needs it: one framing codec for both directions
//! (`tag`, `length`, `body`), the startup packets that come before it, and builders and readers
//! for the few messages the gateway looks into or writes itself. Everything else is passed on as
//! the frame it arrived in.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::errors::SqlError;

/// The largest message DSQL accepts; a bigger one drops the connection.
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// Protocol 3.0 in a StartupMessage.
pub const PROTOCOL_V3: i32 = 196_608;
/// The code of an SSLRequest.
pub const SSL_REQUEST: i32 = 80_877_103;
/// The code of a GSSENCRequest.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// The code of a CancelRequest.
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The socket failed.
    #[error("reading from the socket failed")]
    Io(#[from] std::io::Error),
    /// A length field below its own size.
    #[error("malformed message: length {0} is below the minimum")]
    BadLength(i64),
    /// A message past [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the 10 MiB limit")]
    TooLarge(usize),
    /// A body that does not hold what its tag promises.
    #[error("malformed {tag:?} message: {what}")]
    Malformed {
        /// The message tag.
        tag: char,
        /// What was wrong.
        what: &'static str,
    },
}

/// One message after the startup phase: a tag byte and its body (without the length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type, e.g. `b'Q'`.
    pub tag: u8,
    /// The body after the length field.
    pub body: Bytes,
}

impl Frame {
    /// A frame from its parts.
    #[must_use]
    pub fn new(tag: u8, body: impl Into<Bytes>) -> Self {
        Self { tag, body: body.into() }
    }

    /// Bytes on the wire: tag, length, body.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        5 + self.body.len()
    }
}

/// The framing codec of the v3 protocol after startup, for both directions.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if src.len() < 5 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([src[1], src[2], src[3], src[4]]);
        if len < 4 {
            return Err(WireError::BadLength(len.into()));
        }
        let len = usize::try_from(len).map_err(|_| WireError::BadLength(len.into()))?;
        if len > MAX_MESSAGE {
            return Err(WireError::TooLarge(len));
        }
        if src.len() < 1 + len {
            src.reserve(1 + len - src.len());
            return Ok(None);
        }
        let tag = src.get_u8();
        src.advance(4);
        let body = src.split_to(len - 4).freeze();
        Ok(Some(Frame { tag, body }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.reserve(frame.wire_len());
        dst.put_u8(frame.tag);
        dst.put_i32(i32::try_from(frame.body.len() + 4).map_err(std::io::Error::other)?);
        dst.put_slice(&frame.body);
        Ok(())
    }
}

/// A packet of the startup phase (no tag byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client wants TLS.
    SslRequest,
    /// The client wants GSSAPI encryption.
    GssEncRequest,
    /// Cancel the running query of another connection.
    Cancel {
        /// The backend's process id.
        pid: i32,
        /// The backend's secret key.
        secret: i32,
    },
    /// A StartupMessage: the parameters (user, database, ...), in order.
    Startup(Vec<(String, String)>),
    /// A protocol version the gateway does not speak.
    Unsupported(i32),
}

impl StartupPacket {
    /// A startup parameter by name.
    #[must_use]
    pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one startup-phase packet; startup packets are small, so anything over 10 KiB is refused.
///
/// # Errors
/// A socket error, a bad length or a malformed parameter list.
pub async fn read_startup<R: AsyncRead + Unpin>(reader: &mut R) -> Result<StartupPacket, WireError> {
    let len = reader.read_i32().await?;
    if !(8..=10_240).contains(&len) {
        return Err(WireError::BadLength(len.into()));
    }
    let mut body = vec![0; usize::try_from(len - 4).map_err(|_| WireError::BadLength(len.into()))?];
    reader.read_exact(&mut body).await?;
    let mut body = Bytes::from(body);
    let code = body.get_i32();
    Ok(match code {
        SSL_REQUEST => StartupPacket::SslRequest,
        GSSENC_REQUEST => StartupPacket::GssEncRequest,
        CANCEL_REQUEST if body.len() >= 8 => {
            StartupPacket::Cancel { pid: body.get_i32(), secret: body.get_i32() }
        }
        PROTOCOL_V3 => {
            let mut params = Vec::new();
            let mut reader = BodyReader::new(b'\0', body);
            loop {
                let key = reader.cstr()?;
                if key.is_empty() {
                    break;
                }
                let value = reader.cstr()?;
                params.push((key, value));
            }
            StartupPacket::Startup(params)
        }
        other => StartupPacket::Unsupported(other),
    })
}

/// A StartupMessage's bytes (length included), for the upstream connection.
#[must_use]
pub fn startup_message(params: &[(&str, &str)]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i32(PROTOCOL_V3);
    for (k, v) in params {
        put_cstr(&mut body, k);
        put_cstr(&mut body, v);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    out.put_slice(&body);
    out.freeze()
}

/// A CancelRequest's bytes.
#[must_use]
pub fn cancel_request(pid: i32, secret: i32) -> Bytes {
    let mut out = BytesMut::with_capacity(16);
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST);
    out.put_i32(pid);
    out.put_i32(secret);
    out.freeze()
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// Reads the fields of a message body.
#[derive(Debug)]
pub struct BodyReader {
    tag: u8,
    body: Bytes,
}

impl BodyReader {
    /// A reader over `body` of a message with `tag` (for error messages).
    #[must_use]
    pub fn new(tag: u8, body: Bytes) -> Self {
        Self { tag, body }
    }

    fn malformed(&self, what: &'static str) -> WireError {
        WireError::Malformed { tag: char::from(self.tag), what }
    }

    /// A NUL-terminated string.
    ///
    /// # Errors
    /// No terminator, or not UTF-8.
    pub fn cstr(&mut self) -> Result<String, WireError> {
        let end =
            self.body.iter().position(|&b| b == 0).ok_or_else(|| self.malformed("unterminated string"))?;
        let s = String::from_utf8(self.body.split_to(end).to_vec())
            .map_err(|_| self.malformed("string is not UTF-8"))?;
        self.body.advance(1);
        Ok(s)
    }

    /// A byte.
    ///
    /// # Errors
    /// The body is exhausted.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        if self.body.is_empty() {
            return Err(self.malformed("truncated"));
        }
        Ok(self.body.get_u8())
    }

    /// A 16-bit integer.
    ///
    /// # Errors
    /// The body is exhausted.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        if self.body.len() < 2 {
            return Err(self.malformed("truncated"));
        }
        Ok(self.body.get_i16())
    }

    /// A 32-bit integer.
    ///
    /// # Errors
    /// The body is exhausted.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        if self.body.len() < 4 {
            return Err(self.malformed("truncated"));
        }
        Ok(self.body.get_i32())
    }

    /// What is left of the body.
    #[must_use]
    pub fn rest(self) -> Bytes {
        self.body
    }
}

/// A Parse message: statement name, query text, parameter type OIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Prepared statement name (empty: the unnamed statement).
    pub name: String,
    /// The SQL text.
    pub query: String,
    /// Parameter types given by the client (0: let the server infer).
    pub param_types: Vec<u32>,
}

impl Parse {
    /// Reads a Parse body.
    ///
    /// # Errors
    /// A malformed body.
    pub fn read(body: &Bytes) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b'P', body.clone());
        let name = r.cstr()?;
        let query = r.cstr()?;
        let n = r.i16()?;
        let mut param_types = Vec::with_capacity(usize::try_from(n.max(0)).unwrap_or(0));
        for _ in 0..n {
            param_types.push(u32::from_be_bytes(r.i32()?.to_be_bytes()));
        }
        Ok(Self { name, query, param_types })
    }

    /// The frame of this Parse.
    #[must_use]
    pub fn frame(&self) -> Frame {
        let mut b = BytesMut::new();
        put_cstr(&mut b, &self.name);
        put_cstr(&mut b, &self.query);
        b.put_i16(i16::try_from(self.param_types.len()).unwrap_or(i16::MAX));
        for oid in &self.param_types {
            b.put_u32(*oid);
        }
        Frame::new(b'P', b.freeze())
    }
}

/// The names of a Bind message, and the rest of it (formats and values) as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Destination portal (empty: the unnamed portal).
    pub portal: String,
    /// Source prepared statement.
    pub statement: String,
    /// Parameter formats, values and result formats, as sent.
    pub rest: Bytes,
}

impl Bind {
    /// Reads a Bind body.
    ///
    /// # Errors
    /// A malformed body.
    pub fn read(body: &Bytes) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b'B', body.clone());
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        Ok(Self { portal, statement, rest: r.rest() })
    }

    /// The total size of the parameter values (what a write adds to its transaction).
    #[must_use]
    pub fn param_bytes(&self) -> usize {
        let mut r = BodyReader::new(b'B', self.rest.clone());
        let Ok(formats) = r.i16() else { return 0 };
        for _ in 0..formats {
            if r.i16().is_err() {
                return 0;
            }
        }
        let Ok(n) = r.i16() else { return 0 };
        let mut total = 0usize;
        for _ in 0..n {
            let Ok(len) = r.i32() else { return total };
            if let Ok(len) = usize::try_from(len) {
                total += len;
                let mut rest = r.rest();
                if rest.len() < len {
                    return total;
                }
                rest.advance(len);
                r = BodyReader::new(b'B', rest);
            }
        }
        total
    }

    /// The same parameters bound to another statement and portal, with every result column in
    /// text format (for the gateway's own probe queries).
    #[must_use]
    pub fn rebind(&self, portal: &str, statement: &str) -> Frame {
        let mut r = BodyReader::new(b'B', self.rest.clone());
        let mut b = BytesMut::new();
        put_cstr(&mut b, portal);
        put_cstr(&mut b, statement);
        // Copy parameter formats and values, then ask for text results.
        let copied = (|| -> Result<(), WireError> {
            let formats = r.i16()?;
            b.put_i16(formats);
            for _ in 0..formats {
                b.put_i16(r.i16()?);
            }
            let n = r.i16()?;
            b.put_i16(n);
            for _ in 0..n {
                let len = r.i32()?;
                b.put_i32(len);
                if let Ok(len) = usize::try_from(len) {
                    let mut rest = r.rest();
                    if rest.len() < len {
                        return Err(WireError::Malformed { tag: 'B', what: "truncated parameter" });
                    }
                    b.put_slice(&rest.split_to(len));
                    r = BodyReader::new(b'B', rest);
                }
            }
            Ok(())
        })();
        if copied.is_err() {
            b.clear();
            put_cstr(&mut b, portal);
            put_cstr(&mut b, statement);
            b.put_i16(0);
            b.put_i16(0);
        }
        b.put_i16(0);
        Frame::new(b'B', b.freeze())
    }
}

/// The portal of an Execute message.
///
/// # Errors
/// A malformed body.
pub fn execute_portal(body: &Bytes) -> Result<String, WireError> {
    BodyReader::new(b'E', body.clone()).cstr()
}

/// Describe or Close: `S` (statement) or `P` (portal) and the name.
///
/// # Errors
/// A malformed body.
pub fn target(tag: u8, body: &Bytes) -> Result<(u8, String), WireError> {
    let mut r = BodyReader::new(tag, body.clone());
    let kind = r.u8()?;
    Ok((kind, r.cstr()?))
}

/// The text of a simple Query.
///
/// # Errors
/// A malformed body.
pub fn query_text(body: &Bytes) -> Result<String, WireError> {
    BodyReader::new(b'Q', body.clone()).cstr()
}

/// The fields of an ErrorResponse that the gateway reads: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// `C`: the SQLSTATE.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
}

impl ErrorFields {
    /// Reads an ErrorResponse or NoticeResponse body; unreadable fields stay empty.
    #[must_use]
    pub fn read(body: &Bytes) -> Self {
        let mut r = BodyReader::new(b'E', body.clone());
        let mut fields = Self::default();
        while let Ok(kind) = r.u8() {
            if kind == 0 {
                break;
            }
            let Ok(value) = r.cstr() else { break };
            match kind {
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                _ => {}
            }
        }
        fields
    }
}

/// The command tag of a CommandComplete.
#[must_use]
pub fn command_tag(body: &Bytes) -> String {
    BodyReader::new(b'C', body.clone()).cstr().unwrap_or_default()
}

/// The number of rows a command tag reports for a row write (`INSERT 0 5`, `UPDATE 3`,
/// `DELETE 1`, `MERGE 2`, `COPY 9`), else `None`.
#[must_use]
pub fn rows_written(tag: &str) -> Option<u64> {
    let mut words = tag.split(' ');
    match words.next()? {
        "INSERT" => words.nth(1)?.parse().ok(),
        "UPDATE" | "DELETE" | "MERGE" | "COPY" => words.next()?.parse().ok(),
        _ => None,
    }
}

/// The command tag a write of `rows` rows reports, as PostgreSQL spells it for `verb`.
#[must_use]
pub fn write_tag(verb: &str, rows: u64) -> String {
    if verb == "INSERT" { format!("INSERT 0 {rows}") } else { format!("{verb} {rows}") }
}

/// An ErrorResponse (or FATAL) in DSQL's words.
#[must_use]
pub fn error_response(error: &SqlError) -> Frame {
    let mut b = BytesMut::new();
    for (kind, value) in
        [(b'S', error.severity.as_str()), (b'V', error.severity.as_str()), (b'C', error.code)]
    {
        b.put_u8(kind);
        put_cstr(&mut b, value);
    }
    b.put_u8(b'M');
    put_cstr(&mut b, &error.message);
    if let Some(hint) = &error.hint {
        b.put_u8(b'H');
        put_cstr(&mut b, hint);
    }
    b.put_u8(0);
    Frame::new(b'E', b.freeze())
}

/// A CommandComplete.
#[must_use]
pub fn command_complete(tag: &str) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, tag);
    Frame::new(b'C', b.freeze())
}

/// A ReadyForQuery with status `I`, `T` or `E`.
#[must_use]
pub fn ready_for_query(status: u8) -> Frame {
    Frame::new(b'Z', Bytes::copy_from_slice(&[status]))
}

/// A RowDescription of text columns.
#[must_use]
pub fn row_description(columns: &[&str]) -> Frame {
    let mut b = BytesMut::new();
    b.put_i16(i16::try_from(columns.len()).unwrap_or(i16::MAX));
    for name in columns {
        put_cstr(&mut b, name);
        b.put_i32(0); // table oid
        b.put_i16(0); // column number
        b.put_u32(25); // text
        b.put_i16(-1); // variable size
        b.put_i32(-1); // no modifier
        b.put_i16(0); // text format
    }
    Frame::new(b'T', b.freeze())
}

/// A DataRow of text values.
#[must_use]
pub fn data_row(values: &[&str]) -> Frame {
    let mut b = BytesMut::new();
    b.put_i16(i16::try_from(values.len()).unwrap_or(i16::MAX));
    for value in values {
        b.put_i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
        b.put_slice(value.as_bytes());
    }
    Frame::new(b'D', b.freeze())
}

/// The first value of a DataRow as text (NULL: `None`).
#[must_use]
pub fn first_value(body: &Bytes) -> Option<String> {
    let mut r = BodyReader::new(b'D', body.clone());
    if r.i16().ok()? < 1 {
        return None;
    }
    let len = usize::try_from(r.i32().ok()?).ok()?;
    let rest = r.rest();
    (rest.len() >= len).then(|| String::from_utf8_lossy(&rest[..len]).into_owned())
}

/// The type OIDs of a ParameterDescription.
#[must_use]
pub fn parameter_types(body: &Bytes) -> Vec<u32> {
    let mut r = BodyReader::new(b't', body.clone());
    let n = r.i16().unwrap_or(0);
    (0..n).map_while(|_| r.i32().ok().map(|oid| u32::from_be_bytes(oid.to_be_bytes()))).collect()
}

/// A simple Query.
#[must_use]
pub fn query(sql: &str) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, sql);
    Frame::new(b'Q', b.freeze())
}

/// An Execute of `portal` with no row limit.
#[must_use]
pub fn execute(portal: &str) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, portal);
    b.put_i32(0);
    Frame::new(b'E', b.freeze())
}

/// A Bind of `statement` into `portal` without parameters, text results.
#[must_use]
pub fn bind_plain(portal: &str, statement: &str) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, portal);
    put_cstr(&mut b, statement);
    b.put_i16(0);
    b.put_i16(0);
    b.put_i16(0);
    Frame::new(b'B', b.freeze())
}

/// A Close of a statement (`S`) or portal (`P`).
#[must_use]
pub fn close(kind: u8, name: &str) -> Frame {
    let mut b = BytesMut::new();
    b.put_u8(kind);
    put_cstr(&mut b, name);
    Frame::new(b'C', b.freeze())
}

/// A Sync.
#[must_use]
pub fn sync() -> Frame {
    Frame::new(b'S', Bytes::new())
}

/// A Flush.
#[must_use]
pub fn flush() -> Frame {
    Frame::new(b'H', Bytes::new())
}

/// A ParameterStatus.
#[must_use]
pub fn parameter_status(name: &str, value: &str) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, name);
    put_cstr(&mut b, value);
    Frame::new(b'S', b.freeze())
}

/// An Authentication request or result with `code` (0 ok, 3 cleartext password).
#[must_use]
pub fn authentication(code: i32) -> Frame {
    Frame::new(b'R', Bytes::copy_from_slice(&code.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_reads_wait_for_the_rest() {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::new();
        codec.encode(query("SELECT 1"), &mut buf).unwrap();
        codec.encode(sync(), &mut buf).unwrap();
        let mut partial = buf.split_to(7);
        assert_eq!(codec.decode(&mut partial).unwrap(), None);
        partial.unsplit(buf);
        assert_eq!(codec.decode(&mut partial).unwrap(), Some(query("SELECT 1")));
        assert_eq!(codec.decode(&mut partial).unwrap(), Some(sync()));
        assert_eq!(codec.decode(&mut partial).unwrap(), None);
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused() {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_i32(i32::try_from(MAX_MESSAGE + 5).unwrap());
        assert!(matches!(codec.decode(&mut buf), Err(WireError::TooLarge(_))));
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_i32(-1);
        assert!(matches!(codec.decode(&mut buf), Err(WireError::BadLength(-1))));
    }

    #[test]
    fn parse_and_bind_round_trip() {
        let parse = Parse { name: "s1".into(), query: "SELECT $1".into(), param_types: vec![20] };
        assert_eq!(Parse::read(&parse.frame().body).unwrap(), parse);
        let mut b = BytesMut::new();
        put_cstr(&mut b, "");
        put_cstr(&mut b, "s1");
        b.put_i16(1);
        b.put_i16(1);
        b.put_i16(2);
        b.put_i32(8);
        b.put_i64(42);
        b.put_i32(-1);
        b.put_i16(1);
        b.put_i16(1);
        let bind = Bind::read(&b.freeze()).unwrap();
        assert_eq!(bind.statement, "s1");
        assert_eq!(bind.param_bytes(), 8);
        let rebound = Bind::read(&bind.rebind("p", "probe").body).unwrap();
        assert_eq!((rebound.portal.as_str(), rebound.statement.as_str()), ("p", "probe"));
        assert_eq!(rebound.param_bytes(), 8);
    }

    #[test]
    fn row_counts_come_from_command_tags() {
        assert_eq!(rows_written("INSERT 0 3000"), Some(3000));
        assert_eq!(rows_written("UPDATE 7"), Some(7));
        assert_eq!(rows_written("SELECT 7"), None);
        assert_eq!(write_tag("INSERT", 2), "INSERT 0 2");
        assert_eq!(write_tag("DELETE", 2), "DELETE 2");
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let mut buf = BytesMut::new();
            for _ in 0..(seed % 64) {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                buf.put_u8(seed.to_be_bytes()[0]);
            }
            let body = buf.clone().freeze();
            let _ = FrameCodec.decode(&mut buf);
            let _ = Parse::read(&body);
            let _ = Bind::read(&body).map(|b| (b.param_bytes(), b.rebind("a", "b")));
            let _ = ErrorFields::read(&body);
            let _ = first_value(&body);
            let _ = target(b'D', &body);
        }
    }
}
