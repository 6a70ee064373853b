//! [`Sealed`]: the TLS 1.3 stream every link runs on. rustls drives the handshake and keeps the key
//! schedule (its unbuffered API, then [`rustls::kernel`], the interface meant for kernel TLS); the
//! records themselves are sealed and opened here, in place, in buffers this stream owns.
//!
//! Why not `tokio-rustls`: its buffered connection reads the socket in 4 KiB steps, copies each
//! decrypted record into a second buffer before the reader's, moves leftovers to the front after
//! every record and allocates a fresh buffer per outgoing record. Here a socket read brings up to
//! `READ_WINDOW` bytes, records are opened where they landed and served from there (one copy, into
//! the reader's buffer), and outgoing records are sealed back to back into one buffer written with
//! one call: the byte path is the kernel's copy, one copy, and the cipher, each way.
//!
//! The record layer is RFC 8446 §5: nonce = IV xor sequence number, additional data = the record
//! header, inner content type after the plaintext. Handshake messages after the handshake
//! (KeyUpdate, NewSessionTicket) go to rustls' key schedule; our own keys are renewed with a
//! KeyUpdate long before the AEAD's limit ([`RENEW_AFTER`]). Anything else is an error.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ClientConfig, ConnectionTrafficSecrets, ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest plaintext of one record (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Record header: content type, legacy version, length.
const HEADER: usize = 5;
/// AEAD tag of every TLS 1.3 suite.
const TAG: usize = 16;
/// Largest record on the wire a peer may send (RFC 8446 §5.2: plaintext + 256).
const MAX_RECORD: usize = HEADER + MAX_PLAINTEXT + 256;
/// What one socket read may bring in while the peer streams: eight full records.
const READ_WINDOW: usize = 8 * MAX_RECORD;
/// Sealed bytes waiting for the socket above which writers wait.
const WRITE_HIGH: usize = 512 * 1024;
/// Sealed-output buffers larger than this are let go once written (an idle link on a busy hub
/// keeps none).
const KEEP: usize = 32 * 1024;
/// Input room for a link that is not streaming; input buffers above it are let go once read.
const QUIET_INPUT: usize = 4 * 1024;
/// Bytes of handshake a peer may have us hold (rustls itself refuses messages over 64 KiB).
const MAX_HANDSHAKE: usize = 128 * 1024;
/// Records sealed under one key before it is renewed: far below AES-GCM's 2^24.5 (RFC 8446 §5.5).
const RENEW_AFTER: u64 = 1 << 23;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_NEW_SESSION_TICKET: u8 = 4;
const HANDSHAKE_KEY_UPDATE: u8 = 24;
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_USER_CANCELED: u8 = 90;

/// Completes a TLS 1.3 handshake as the client (`config` must allow secret extraction).
pub async fn connect<IO>(config: Arc<ClientConfig>, name: ServerName<'static>, io: IO) -> io::Result<Sealed<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedClientConnection::new(config, name).map_err(invalid)?;
    handshake(io, conn).await
}

/// Completes a TLS 1.3 handshake as the server (`config` must allow secret extraction).
pub async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> io::Result<Sealed<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    handshake(io, conn).await
}

/// Readies a server config for [`accept`]: rustls hands the traffic secrets to this layer, and
/// sends no session tickets (links do not resume).
pub fn prepare_server(config: &mut ServerConfig) {
    config.enable_secret_extraction = true;
    config.send_tls13_tickets = 0;
}

/// Readies a client config for [`connect`]: rustls hands the traffic secrets to this layer.
pub fn prepare_client(config: &mut ClientConfig) {
    config.enable_secret_extraction = true;
}

/// A link's TLS: what the handshake settled and the two directions' record state.
pub struct Sealed<IO> {
    io: IO,
    keys: Keys,
    rx: Direction,
    tx: Direction,
    /// Bytes from the socket not yet consumed; the record being served starts at 0.
    input: BytesMut,
    /// Opened plaintext of the record at the front of `input`, not yet read.
    plain: Range<usize>,
    /// Wire length of that record (consumed once `plain` is empty).
    opened: usize,
    /// Application data that arrived with the handshake, served first.
    early: BytesMut,
    /// Sealed records not yet written: `output[written..]`.
    output: Vec<u8>,
    written: usize,
    /// The last socket read filled the room it had: the peer is streaming.
    streaming: bool,
    /// Records sealed under one key before it is renewed ([`RENEW_AFTER`]; less in tests).
    renew_after: u64,
    /// The peer sent close_notify.
    read_closed: bool,
    /// We queued close_notify.
    close_queued: bool,
    peer_certificates: Option<Vec<CertificateDer<'static>>>,
    alpn: Option<Vec<u8>>,
}

impl<IO> Sealed<IO> {
    /// The certificate chain the peer presented, leaf first.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.peer_certificates.as_deref()
    }

    /// The stream the records travel on.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The application protocol both sides agreed on.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }
}

impl<IO> std::fmt::Debug for Sealed<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("rx_seq", &self.rx.seq).field("tx_seq", &self.tx.seq).finish_non_exhaustive()
    }
}

/// One direction's key, IV and record counter.
struct Direction {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Direction {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> io::Result<Direction> {
        let (algorithm, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&aead::CHACHA20_POLY1305, key, iv),
            _ => return Err(invalid("the negotiated cipher suite has no record layer here")),
        };
        let key = UnboundKey::new(algorithm, key.as_ref()).map_err(|_| invalid("bad traffic key"))?;
        let iv = iv.as_ref().try_into().map_err(|_| invalid("bad traffic IV"))?;
        Ok(Direction { key: LessSafeKey::new(key), iv, seq })
    }

    /// The nonce of the next record (RFC 8446 §5.3), counting it.
    fn next_nonce(&mut self) -> io::Result<Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[aead::NONCE_LEN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or_else(|| invalid("record sequence number exhausted"))?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// rustls' key schedule after the handshake, for either side.
enum Keys {
    Client(KernelConnection<ClientConnectionData>),
    Server(KernelConnection<ServerConnectionData>),
}

impl Keys {
    fn next_tx(&mut self) -> io::Result<Direction> {
        Direction::new(
            match self {
                Keys::Client(k) => k.update_tx_secret(),
                Keys::Server(k) => k.update_tx_secret(),
            }
            .map_err(invalid)?,
        )
    }

    fn next_rx(&mut self) -> io::Result<Direction> {
        Direction::new(
            match self {
                Keys::Client(k) => k.update_rx_secret(),
                Keys::Server(k) => k.update_rx_secret(),
            }
            .map_err(invalid)?,
        )
    }

    fn new_session_ticket(&mut self, payload: &[u8]) -> io::Result<()> {
        match self {
            Keys::Client(k) => k.handle_new_session_ticket(payload).map_err(invalid),
            Keys::Server(_) => Err(invalid("a client sent a session ticket")),
        }
    }
}

/// The two unbuffered connection types, as the handshake drives them.
trait Side: Sized {
    type Data;
    fn common(&self) -> &rustls::CommonState;
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn into_keys(self) -> Result<(rustls::ExtractedSecrets, Keys), rustls::Error>;
}

/// The same three calls on either connection type (rustls has no trait for them).
macro_rules! side {
    ($connection:ty, $data:ty, $keys:ident) => {
        impl Side for $connection {
            type Data = $data;
            fn common(&self) -> &rustls::CommonState {
                self
            }
            fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, $data> {
                self.process_tls_records(input)
            }
            fn into_keys(self) -> Result<(rustls::ExtractedSecrets, Keys), rustls::Error> {
                self.dangerous_into_kernel_connection().map(|(secrets, kernel)| (secrets, Keys::$keys(kernel)))
            }
        }
    };
}

side!(UnbufferedClientConnection, ClientConnectionData, Client);
side!(UnbufferedServerConnection, ServerConnectionData, Server);

/// What the handshake loop does after rustls looked at the input.
enum Step {
    Read,
    Again,
    /// rustls may send: done, unless it still waits for the peer (a TLS 1.3 server may send
    /// before the client's Finished).
    MaySend,
    Failed(io::Error),
}

async fn handshake<IO, S>(mut io: IO, mut conn: S) -> io::Result<Sealed<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Side,
{
    let mut input = BytesMut::with_capacity(MAX_RECORD);
    let mut output = Vec::new();
    let mut early = BytesMut::new();
    loop {
        let status = conn.process(&mut input[..]);
        let mut discard = status.discard;
        let step = match status.state {
            Err(e) => Step::Failed(invalid(e)),
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                match encode_into(&mut output, |out| encode.encode(out)) {
                    Ok(()) => Step::Again,
                    Err(e) => Step::Failed(e),
                }
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                io.write_all(&output).await?;
                output.clear();
                transmit.done();
                Step::Again
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut failed = None;
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            early.extend_from_slice(record.payload);
                        }
                        Err(e) => {
                            failed = Some(invalid(e));
                            break;
                        }
                    }
                }
                failed.map_or(Step::Again, Step::Failed)
            }
            Ok(ConnectionState::BlockedHandshake) => Step::Read,
            Ok(ConnectionState::WriteTraffic(_)) => Step::MaySend,
            Ok(ConnectionState::Closed | ConnectionState::PeerClosed) => {
                Step::Failed(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed during the TLS handshake"))
            }
            Ok(_) => Step::Failed(invalid("unexpected TLS state during the handshake")),
        };
        input.advance(discard);
        match step {
            Step::Again => {}
            Step::MaySend if !conn.common().is_handshaking() => break,
            Step::Read | Step::MaySend => {
                if input.len() > MAX_HANDSHAKE {
                    return Err(invalid("the TLS handshake is larger than any this side sends"));
                }
                input.reserve(MAX_RECORD);
                if io.read_buf(&mut input).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the TLS handshake",
                    ));
                }
            }
            Step::Failed(e) => {
                send_alert(&mut io, &mut conn, &mut input).await;
                return Err(e);
            }
        }
    }
    let common = conn.common();
    if common.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return Err(invalid("links need TLS 1.3"));
    }
    let peer_certificates =
        common.peer_certificates().map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
    let alpn = common.alpn_protocol().map(<[u8]>::to_vec);
    let (secrets, keys) = conn.into_keys().map_err(invalid)?;
    Ok(Sealed {
        io,
        keys,
        rx: Direction::new(secrets.rx)?,
        tx: Direction::new(secrets.tx)?,
        input,
        plain: 0..0,
        opened: 0,
        early,
        output: Vec::new(),
        written: 0,
        streaming: false,
        renew_after: RENEW_AFTER,
        read_closed: false,
        close_queued: false,
        peer_certificates,
        alpn,
    })
}

/// Appends what `encode` writes to `output`, growing it as rustls asks.
fn encode_into(
    output: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> io::Result<()> {
    let start = output.len();
    let mut room = 4096;
    loop {
        output.resize(start + room, 0);
        match encode(&mut output[start..]) {
            Ok(n) => {
                output.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(short)) if short.required_size > room => room = short.required_size,
            Err(e) => {
                output.truncate(start);
                return Err(invalid(e));
            }
        }
    }
}

/// After a failed handshake: the alert rustls queued goes out, best effort, so the peer learns why.
async fn send_alert<IO: AsyncWrite + Unpin, S: Side>(io: &mut IO, conn: &mut S, input: &mut BytesMut) {
    let mut output = Vec::new();
    if let Ok(ConnectionState::EncodeTlsData(mut encode)) = conn.process(&mut input[..]).state
        && encode_into(&mut output, |out| encode.encode(out)).is_ok()
    {
        let _ = io.write_all(&output).await;
    }
}

impl<IO> Sealed<IO> {
    /// Opens the record at the front of the input if it is complete; `Ok(false)` asks for more.
    fn open_record(&mut self) -> io::Result<bool> {
        let Some(header) = self.input.get(..HEADER) else { return Ok(false) };
        let header: [u8; HEADER] = header.try_into().expect("five bytes");
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != CONTENT_APPLICATION_DATA {
            return Err(invalid(format!("unexpected TLS record type {} after the handshake", header[0])));
        }
        if !(TAG + 1..=MAX_RECORD - HEADER).contains(&len) {
            return Err(invalid(format!("TLS record of {len} bytes")));
        }
        let Some(body) = self.input.get_mut(HEADER..HEADER + len) else { return Ok(false) };
        let nonce = self.rx.next_nonce()?;
        let inner = self
            .rx
            .key
            .open_in_place(nonce, Aad::from(header), body)
            .map_err(|_| invalid("a TLS record failed to decrypt"))?;
        // The content type is the last non-zero byte; zeros after it are padding.
        let Some(end) = inner.iter().rposition(|&b| b != 0) else {
            return Err(invalid("a TLS record without a content type"));
        };
        let content = inner[end];
        self.opened = HEADER + len;
        match content {
            CONTENT_APPLICATION_DATA => {
                self.plain = HEADER..HEADER + end;
            }
            CONTENT_ALERT => {
                let alert = inner[..end].to_vec();
                self.consume_record();
                self.alert(&alert)?;
            }
            CONTENT_HANDSHAKE => {
                let messages = inner[..end].to_vec();
                self.consume_record();
                self.post_handshake(&messages)?;
            }
            other => return Err(invalid(format!("unexpected TLS content type {other}"))),
        }
        Ok(true)
    }

    fn consume_record(&mut self) {
        self.input.advance(self.opened);
        (self.opened, self.plain) = (0, 0..0);
        if self.input.is_empty() && !self.streaming && self.input.capacity() > QUIET_INPUT {
            // The peer paused and everything was read: an idle link keeps no large buffer.
            self.input = BytesMut::new();
        }
    }

    /// Room the next socket read needs: a window while the peer streams, else the rest of the
    /// record in front (at least a little).
    fn read_room(&self) -> usize {
        if self.streaming {
            return READ_WINDOW;
        }
        let record = match self.input.get(3..HEADER) {
            Some(len) => HEADER + usize::from(u16::from_be_bytes([len[0], len[1]])),
            None => MAX_RECORD,
        };
        record.saturating_sub(self.input.len()).max(QUIET_INPUT)
    }

    fn alert(&mut self, alert: &[u8]) -> io::Result<()> {
        match alert {
            [_, ALERT_CLOSE_NOTIFY] => {
                self.read_closed = true;
                Ok(())
            }
            [1, ALERT_USER_CANCELED] => Ok(()),
            [_, description] => Err(invalid(format!("the peer sent TLS alert {description}"))),
            _ => Err(invalid("a malformed TLS alert")),
        }
    }

    /// KeyUpdate and NewSessionTicket, the handshake messages TLS 1.3 allows after the handshake.
    fn post_handshake(&mut self, mut messages: &[u8]) -> io::Result<()> {
        while let [kind, a, b, c, rest @ ..] = messages {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            let (body, rest) = rest.split_at_checked(len).ok_or_else(|| invalid("a split TLS handshake message"))?;
            match (*kind, body) {
                (HANDSHAKE_KEY_UPDATE, [requested @ (0 | 1)]) => {
                    if !rest.is_empty() {
                        return Err(invalid("data after a TLS KeyUpdate in its record"));
                    }
                    self.rx = self.keys.next_rx()?;
                    // After our close_notify nothing more may be sent; the peer is not owed one.
                    if *requested == 1 && !self.close_queued {
                        self.renew_tx()?;
                    }
                }
                (HANDSHAKE_NEW_SESSION_TICKET, payload) => self.keys.new_session_ticket(payload)?,
                (kind, _) => return Err(invalid(format!("unexpected TLS handshake message {kind}"))),
            }
            messages = rest;
        }
        if messages.is_empty() { Ok(()) } else { Err(invalid("a split TLS handshake message")) }
    }

    /// Seals `parts` (at most one record's plaintext in all) as one record of `content`.
    fn seal(&mut self, content: u8, parts: &[&[u8]]) -> io::Result<()> {
        self.seal_inner(parts, &[content])
    }

    /// Seals one record whose inner plaintext is `parts` then `tail` (the content type, and any
    /// padding after it).
    fn seal_inner(&mut self, parts: &[&[u8]], tail: &[u8]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(len <= MAX_PLAINTEXT);
        let wire = len + tail.len() + TAG;
        let start = self.output.len();
        self.output.reserve(HEADER + wire);
        let header = [CONTENT_APPLICATION_DATA, 0x03, 0x03, (wire >> 8) as u8, wire as u8];
        self.output.extend_from_slice(&header);
        for part in parts {
            self.output.extend_from_slice(part);
        }
        self.output.extend_from_slice(tail);
        let nonce = self.tx.next_nonce()?;
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.output[start + HEADER..])
            .map_err(|_| invalid("a TLS record failed to seal"))?;
        self.output.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Tells the peer our next records use the next key (RFC 8446 §4.6.3), then switches to it.
    fn renew_tx(&mut self) -> io::Result<()> {
        self.seal(CONTENT_HANDSHAKE, &[&[HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0]])?;
        self.tx = self.keys.next_tx()?;
        Ok(())
    }

    /// Seals as much of `bufs` as fits under the write limit, in full records; returns the count.
    fn seal_all(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let room = WRITE_HIGH.saturating_sub(self.output.len() - self.written).max(MAX_PLAINTEXT);
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(room);
        self.seal_up_to(bufs, total)
    }

    /// Seals all of `bufs` (a frame header and its payload share records) for the next write,
    /// whatever is already waiting: the caller bounds what it queues ([`Sealed::queued`]).
    pub fn queue(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        if self.close_queued {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the TLS stream was shut down"));
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        self.seal_up_to(bufs, total).map(drop)
    }

    /// Queues close_notify: nothing may be queued after it.
    pub fn queue_close(&mut self) -> io::Result<()> {
        if !self.close_queued {
            self.seal(CONTENT_ALERT, &[&[1, ALERT_CLOSE_NOTIFY]])?;
            self.close_queued = true;
        }
        Ok(())
    }

    /// Sealed bytes waiting for the socket.
    pub fn queued(&self) -> usize {
        self.pending_output()
    }

    fn seal_up_to(&mut self, bufs: &[io::IoSlice<'_>], total: usize) -> io::Result<usize> {
        self.output.reserve(total + total.div_ceil(MAX_PLAINTEXT) * (HEADER + 1 + TAG));
        let (mut taken, mut slice, mut offset) = (0, 0, 0);
        while taken < total {
            if self.tx.seq >= self.renew_after {
                self.renew_tx()?;
            }
            // One record's worth, gathered across slices (a frame header and its payload share one).
            let mut parts: [&[u8]; 8] = [&[]; 8];
            let (mut n, mut len) = (0, 0);
            while n < parts.len() && len < MAX_PLAINTEXT && taken + len < total {
                let buf = &bufs[slice][offset..];
                let want = buf.len().min(MAX_PLAINTEXT - len).min(total - taken - len);
                parts[n] = &buf[..want];
                (n, len) = (n + 1, len + want);
                offset += want;
                if offset == bufs[slice].len() {
                    (slice, offset) = (slice + 1, 0);
                }
            }
            self.seal(CONTENT_APPLICATION_DATA, &parts[..n])?;
            taken += len;
        }
        Ok(total)
    }

    fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }
}

impl<IO> Sealed<IO> {
    /// Everything queued was written: the output buffer starts over (and is let go if large).
    fn drained(&mut self) {
        self.written = 0;
        if self.output.capacity() > KEEP {
            self.output = Vec::new();
        } else {
            self.output.clear();
        }
    }
}

impl<IO: AsyncWrite + Unpin> Sealed<IO> {
    /// Writes sealed records until none are left or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.output.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.output[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.drained();
        Poll::Ready(Ok(()))
    }
}

impl Sealed<tokio::net::TcpStream> {
    /// Writes queued records while the socket takes them, without waiting and without taking the
    /// socket's write wake-up from the task that polls this stream (many tasks may call this;
    /// one polls). `Ok(false)` when some are left.
    pub fn try_drain(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.io.try_write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.drained();
        Ok(true)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Sealed<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = out.remaining().min(this.early.len());
            out.put_slice(&this.early.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.plain.is_empty() {
                let n = out.remaining().min(this.plain.len());
                out.put_slice(&this.input[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                if this.plain.is_empty() {
                    this.consume_record();
                }
                return Poll::Ready(Ok(()));
            }
            if this.opened > 0 {
                // An empty application record.
                this.consume_record();
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            if this.open_record()? {
                // A KeyUpdate may have queued our own: it goes out with the next write or flush,
                // or now. A peer asking for them faster than it reads ours is not read further
                // until they are out, so it cannot make this side hold more than the write limit.
                if this.pending_output() >= WRITE_HIGH {
                    ready!(this.poll_drain(cx))?;
                } else if this.pending_output() > 0 {
                    let _ = this.poll_drain(cx)?;
                }
                continue;
            }
            let room = this.read_room();
            if this.input.capacity() - this.input.len() < room {
                this.input.reserve(room);
            }
            let before = this.input.len();
            let asked = this.input.capacity() - before;
            ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.input))?;
            let got = this.input.len() - before;
            if got == 0 {
                let what = if before == 0 { "without TLS close_notify" } else { "in the middle of a TLS record" };
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the peer closed {what}"),
                )));
            }
            this.streaming = got == asked;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Sealed<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_queued {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the TLS stream was shut down")));
        }
        if this.pending_output() >= WRITE_HIGH {
            ready!(this.poll_drain(cx))?;
        }
        let n = this.seal_all(bufs)?;
        // Start the write now; what the socket does not take goes with the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            this.seal(CONTENT_ALERT, &[&[1, ALERT_CLOSE_NOTIFY]])?;
            this.close_queued = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A client and a server config for "link.test" on a fresh self-signed certificate (tests and
/// fuzzing); the server sends `tickets` session tickets.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn throwaway_configs(tickets: usize) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let cert = rcgen::generate_simple_self_signed(vec!["link.test".to_string()]).expect("a certificate");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).expect("a root");
    let versions = [&rustls::version::TLS13];
    let mut client = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&versions)
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    prepare_client(&mut client);
    let mut server = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&versions)
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("a server config");
    prepare_server(&mut server);
    server.send_tls13_tickets = tickets;
    (Arc::new(client), Arc::new(server))
}

/// Fuzzing (feature `fuzzing`): a handshake completed in memory, then `input` picks what a peer
/// holding the keys sends — sealed records with any inner content, content type and padding, and
/// raw bytes — until it hangs up. The reading side must end in data, EOF or an error, never a
/// panic, and hold no more than the write limit.
#[cfg(feature = "fuzzing")]
pub fn fuzz_peer_records(input: &[u8]) {
    use std::sync::OnceLock;

    static CONFIGS: OnceLock<(Arc<ClientConfig>, Arc<ServerConfig>)> = OnceLock::new();
    let (client_config, server_config) = CONFIGS.get_or_init(|| throwaway_configs(0)).clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 20);
        let name = ServerName::try_from("link.test").expect("a name");
        let (client, server) = tokio::join!(connect(client_config, name, a), accept(server_config, b));
        let (mut peer, mut server) = (client.expect("client handshake"), server.expect("server handshake"));
        let mut rest = input;
        while let [op, len, rest_after @ ..] = rest {
            let (body, after) = rest_after.split_at(usize::from(*len).min(rest_after.len()));
            rest = after;
            let sealed = match op % 4 {
                // Raw bytes on the wire.
                0 => {
                    peer.output.extend_from_slice(body);
                    Ok(())
                }
                // A record with whatever inner plaintext (its last non-zero byte is the type).
                1 => peer.seal_inner(&[body], &[]),
                // Application data, an alert, a handshake message, with padding.
                _ => match body.split_first() {
                    Some((content, payload)) => peer.seal_inner(&[payload], &[*content, 0, 0]),
                    None => Ok(()),
                },
            };
            if sealed.is_err() {
                break;
            }
        }
        let wire = std::mem::take(&mut peer.output);
        peer.io.write_all(&wire).await.expect("the duplex takes it");
        drop(peer);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = server.read(&mut buf).await {
            assert!(n <= buf.len());
        }
        assert!(server.pending_output() <= WRITE_HIGH + MAX_RECORD, "held {}", server.pending_output());
    });
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, duplex};

    use super::{Sealed, accept, connect};

    fn name() -> ServerName<'static> {
        ServerName::try_from("link.test").unwrap()
    }

    async fn pair() -> (Sealed<DuplexStream>, Sealed<DuplexStream>) {
        let (client_config, server_config) = super::throwaway_configs(0);
        let (a, b) = duplex(64 * 1024);
        let (client, server) = tokio::join!(connect(client_config, name(), a), accept(server_config, b));
        (client.unwrap(), server.unwrap())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ (i >> 12) as u8)).collect()
    }

    /// Writes `data` in chunks of every awkward size (around a record's plaintext), each as two
    /// slices, then shuts down.
    async fn send_all(w: &mut (impl AsyncWrite + Unpin), data: &[u8]) {
        let sizes = [1, 9, 100, 16_383, 16_384, 16_385, 128 * 1024, 300_000];
        let (mut at, mut i) = (0, 0);
        while at < data.len() {
            let end = (at + sizes[i % sizes.len()]).min(data.len());
            let mid = at + (end - at) / 3;
            let n = w.write_vectored(&[IoSlice::new(&data[at..mid]), IoSlice::new(&data[mid..end])]).await.unwrap();
            assert!(n > 0);
            at += n;
            i += 1;
        }
        w.shutdown().await.unwrap();
    }

    /// `up` from `a` to `b` and `down` back at once, each ending with a shutdown: what `b` and `a`
    /// read, and both streams.
    async fn exchange<A, B>(a: A, b: B, up: &[u8], down: &[u8]) -> (Vec<u8>, Vec<u8>, A, B)
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut a_read, mut a_write) = tokio::io::split(a);
        let (mut b_read, mut b_write) = tokio::io::split(b);
        let (got_up, got_down, (), ()) = tokio::join!(
            read_all(&mut b_read),
            read_all(&mut a_read),
            send_all(&mut a_write, up),
            send_all(&mut b_write, down),
        );
        (got_up, got_down, a_read.unsplit(a_write), b_read.unsplit(b_write))
    }

    async fn read_all(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_exactly_and_close_notify_ends_each_direction() {
        let (client, server) = pair().await;
        let (up, down) = (pattern(3 << 20, 1), pattern(1 << 20, 2));
        let (got_up, got_down, _, _) = exchange(client, server, &up, &down).await;
        assert!(got_up == up, "client to server: {} bytes of {}", got_up.len(), up.len());
        assert!(got_down == down, "server to client: {} bytes of {}", got_down.len(), down.len());
    }

    #[tokio::test]
    async fn keys_are_renewed_and_the_bytes_keep_flowing() {
        let (mut client, mut server) = pair().await;
        (client.renew_after, server.renew_after) = (3, 5);
        let (up, down) = (pattern(1 << 20, 3), pattern(1 << 20, 4));
        let (got_up, got_down, client, server) = exchange(client, server, &up, &down).await;
        assert!(got_up == up && got_down == down);
        // 1 MiB is 64 records: each side renewed its key many times, and the peer followed.
        assert!(client.tx.seq <= 4, "client's records under its last key: {}", client.tx.seq);
        assert!(server.tx.seq <= 6, "server's records under its last key: {}", server.tx.seq);
        assert!(client.rx.seq <= 6 && server.rx.seq <= 4);
    }

    #[tokio::test]
    async fn a_tampered_record_is_refused_and_an_intact_one_opens() {
        let (mut client, mut server) = pair().await;
        client.seal_all(&[IoSlice::new(b"hello")]).unwrap();
        let sealed = std::mem::take(&mut client.output);
        let mut tampered = sealed.clone();
        tampered[8] ^= 1;
        server.input.extend_from_slice(&tampered);
        let err = server.open_record().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

        let (mut client, mut server) = pair().await;
        client.seal_all(&[IoSlice::new(b"hel"), IoSlice::new(b"lo")]).unwrap();
        server.input.extend_from_slice(&client.output);
        assert!(server.open_record().unwrap());
        assert_eq!(&server.input[server.plain.clone()], b"hello");
    }

    /// A peer that asks for KeyUpdates and never reads our answers: this side stops reading once
    /// its answers reach the write limit, instead of holding them all.
    #[tokio::test]
    async fn a_peer_flooding_key_update_requests_cannot_grow_our_output() {
        let (mut client, mut server) = pair().await;
        for _ in 0..100_000 {
            client.seal(super::CONTENT_HANDSHAKE, &[&[super::HANDSHAKE_KEY_UPDATE, 0, 0, 1, 1]]).unwrap();
            client.tx = client.keys.next_tx().unwrap();
        }
        let flood = std::mem::take(&mut client.output);
        let (_client_r, mut client_w) = tokio::io::split(client.io);
        tokio::spawn(async move { client_w.write_all(&flood).await });
        let read = tokio::time::timeout(std::time::Duration::from_millis(500), server.read(&mut [0u8; 64])).await;
        assert!(read.is_err(), "the read should wait for our answers to go out, got {read:?}");
        assert!(server.pending_output() < super::WRITE_HIGH + 64, "held {} bytes", server.pending_output());
        assert!(server.rx.seq < 100, "the server followed the peer's key updates");
    }

    #[tokio::test]
    async fn a_peer_that_hangs_up_without_close_notify_is_an_unexpected_eof() {
        let (mut client, server) = pair().await;
        drop(server);
        let err = client.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    /// Our records against rustls' own (tokio-rustls) on the other end, which sends session
    /// tickets and, asked to, a KeyUpdate that requests ours.
    #[tokio::test]
    async fn speaks_tls_with_stock_rustls_through_tickets_and_key_updates() {
        let (client_config, server_config) = super::throwaway_configs(2);
        let (a, b) = duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let (client, server) = tokio::join!(connect(client_config, name(), a), acceptor.accept(b));
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        let first = pattern(200_000, 5);
        let (got, ()) = tokio::join!(
            async {
                let mut got = vec![0u8; first.len()];
                server.read_exact(&mut got).await.unwrap();
                got
            },
            async {
                client.write_all(&first).await.unwrap();
                client.flush().await.unwrap();
            },
        );
        assert!(got == first);
        server.get_mut().1.refresh_traffic_keys().unwrap();
        let (up, down) = (pattern(500_000, 6), pattern(500_000, 7));
        let (got_up, got_down, _, _) = exchange(client, server, &up, &down).await;
        assert!(got_up == up, "to stock rustls: {} of {}", got_up.len(), up.len());
        assert!(got_down == down, "from stock rustls: {} of {}", got_down.len(), down.len());
    }
}
