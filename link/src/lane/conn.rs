//! One lane connection's state, shared by its driver and its streams' tasks under one lock that is
//! never held across an await. The driver opens records, parses frames and writes DATA straight to
//! the sockets streams attached; a stream's task seals its DATA into the connection's output and
//! writes it itself. Flow control is HTTP/2's: a stream's window is returned only for bytes its
//! socket took, so a slow local reader holds the peer back instead of filling this side's memory.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::backlog::{self, Backlog};
use super::fields::{self, FieldsError};
use super::frame::{self, Head};
use super::status::{Answered, LaneError, REASON};
use crate::pump::{TapDirection, TapSender};
use crate::sealed::{MAX_PLAINTEXT, Sealed};
use crate::tuning::{CONNECTION_WINDOW, MAX_FRAME, MAX_HEADER_LIST, MAX_STREAMS, STREAM_WINDOW};

/// Sealed output above which a stream's task waits for the driver to write it.
const OUTPUT_HIGH: usize = 512 * 1024;
/// Room the driver makes in its input before each read (a record and then some).
const READ_ROOM: usize = 4 * MAX_PLAINTEXT;
/// An input buffer larger than this is let go once it is empty (an idle lane keeps none).
const KEEP_INPUT: usize = 256 * 1024;
/// Records opened in one turn of the driver before it lets other tasks run.
const RECORDS_PER_TURN: usize = 64;
/// A window is returned once this part of it was consumed (a quarter).
const RETURN_AT_DIVISOR: i64 = 4;

/// A connection error: the code sent in GOAWAY and what the peer did.
type ConnError = (u32, &'static str);

/// A header block as decoded: its fields, or why they were refused.
type Decoded = Result<Vec<(String, String)>, FieldsError>;

/// Why DATA could not be sealed: the stream (or lane) failed, or the output did.
enum SendError {
    Stream(LaneError),
    Output(io::Error),
}

/// The state behind every handle of one lane.
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(state: State) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::new(state) })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the connection writes, and who waits on it.
struct Out {
    io: Sealed<TcpStream>,
    /// The driver's task: woken to write what the streams' tasks could not.
    driver: Option<Waker>,
    /// Streams' tasks waiting for the output to drain.
    room: Vec<Waker>,
}

impl Out {
    fn frame(&mut self, head: Head, payload: &[u8]) -> io::Result<()> {
        let head = head.encode();
        self.io.queue(&[IoSlice::new(&head), IoSlice::new(payload)])
    }

    fn wake_driver(&self) {
        if let Some(driver) = &self.driver {
            driver.wake_by_ref();
        }
    }

    /// Writes what the socket takes now; the driver writes the rest when it can.
    fn push(&mut self) -> io::Result<()> {
        if !self.io.try_drain()? {
            self.wake_driver();
        }
        Ok(())
    }
}

/// The connection's windows: what this side may still send, what the peer may still send, and what
/// was consumed but not yet returned to it.
struct Flow {
    send: i64,
    recv_left: i64,
    unacked: i64,
}

/// What the peer's SETTINGS said.
struct Peer {
    initial_window: i64,
    max_frame: usize,
    max_streams: usize,
    connect_protocol: bool,
}

/// PINGs this side sent and the peer answered.
#[derive(Default)]
struct Pings {
    sent: u64,
    acked: u64,
    waiters: Vec<Waker>,
}

/// A request the peer opened, not yet accepted.
pub(crate) struct Opened {
    pub(crate) id: u32,
    pub(crate) fields: Vec<(String, String)>,
}

/// One stream.
pub(crate) struct Entry {
    send_window: i64,
    recv_left: i64,
    unacked: i64,
    /// The answer to a stream this side opened.
    answer: Option<Answered>,
    /// END_STREAM (or RST_STREAM) went out.
    sent_end: bool,
    /// END_STREAM (or RST_STREAM) came in.
    received_end: bool,
    failed: Option<LaneError>,
    /// The task of the stream's handle.
    waker: Option<Waker>,
    /// That task waits for send window.
    blocked: bool,
    /// Where DATA goes once attached, and what did not fit in it yet.
    socket: Option<Arc<TcpStream>>,
    tap: Option<Arc<TapSender>>,
    backlog: Backlog,
    /// Bytes of DATA received.
    received: u64,
}

impl Entry {
    fn new(send_window: i64) -> Entry {
        Entry {
            send_window,
            recv_left: i64::from(STREAM_WINDOW),
            unacked: 0,
            answer: None,
            sent_end: false,
            received_end: false,
            failed: None,
            waker: None,
            blocked: false,
            socket: None,
            tap: None,
            backlog: Backlog::default(),
            received: 0,
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = &self.waker {
            waker.wake_by_ref();
        }
    }

    /// The stream's task waits: it is woken on the stream's next event.
    fn wait(&mut self, cx: &Context<'_>) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
    }

    fn fail(&mut self, error: LaneError) {
        if self.failed.is_none() {
            self.failed = Some(error);
        }
        self.wake();
    }

    /// Writes what of `data` the socket takes now, if nothing waits before it; returns the bytes
    /// it took (all of them when the socket failed: they go nowhere, and the stream fails).
    fn write_now(&mut self, data: &[u8]) -> usize {
        let Some(socket) = self.socket.as_ref().filter(|_| self.backlog.is_empty()) else {
            return 0;
        };
        match socket.try_write(data) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                self.fail(LaneError::Local(e.kind()));
                data.len()
            }
        }
    }

    /// DATA was held for the socket: the stream's task writes it once the socket is writable (or
    /// once the stream is attached to one).
    fn kept(&mut self) {
        if self.socket.is_some() {
            self.wake();
        }
    }
}

/// A lane's state.
pub(crate) struct State {
    out: Out,
    client: bool,
    /// Plaintext not yet parsed into frames.
    input: BytesMut,
    preface_seen: bool,
    pub(crate) settings_seen: bool,
    streams: HashMap<u32, Entry>,
    next_id: u32,
    last_peer_id: u32,
    flow: Flow,
    peer: Peer,
    incoming: VecDeque<Opened>,
    acceptor: Option<Waker>,
    pings: Pings,
    ended: Option<LaneError>,
    going_away: bool,
}

impl State {
    /// A lane over `io` whose opening (preface, SETTINGS, connection window) is queued.
    pub(crate) fn new(io: Sealed<TcpStream>, client: bool) -> Result<State, LaneError> {
        let mut state = State {
            out: Out { io, driver: None, room: Vec::new() },
            client,
            input: BytesMut::new(),
            preface_seen: client,
            settings_seen: false,
            streams: HashMap::new(),
            next_id: 1,
            last_peer_id: 0,
            flow: Flow { send: frame::DEFAULT_WINDOW, recv_left: i64::from(CONNECTION_WINDOW), unacked: 0 },
            peer: Peer {
                initial_window: frame::DEFAULT_WINDOW,
                max_frame: frame::DEFAULT_MAX_FRAME,
                max_streams: usize::MAX,
                connect_protocol: false,
            },
            incoming: VecDeque::new(),
            acceptor: None,
            pings: Pings::default(),
            ended: None,
            going_away: false,
        };
        let mut settings = vec![
            (frame::SETTINGS_HEADER_TABLE_SIZE, 0),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (frame::SETTINGS_MAX_FRAME_SIZE, MAX_FRAME),
            (frame::SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST),
            (frame::SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS),
        ];
        settings.push(if client {
            (frame::SETTINGS_ENABLE_PUSH, 0)
        } else {
            (frame::SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)
        });
        let settings = frame::settings(&settings);
        let window = (i64::from(CONNECTION_WINDOW) - frame::DEFAULT_WINDOW) as u32;
        let opening = (|| {
            if client {
                state.out.io.queue(&[IoSlice::new(frame::PREFACE)])?;
            }
            state.out.frame(Head::new(frame::SETTINGS, 0, 0, settings.len()), &settings)?;
            state.out.frame(Head::new(frame::WINDOW_UPDATE, 0, 0, 4), &window.to_be_bytes())
        })();
        opening.map_err(|e| LaneError::Io(e.to_string()))?;
        Ok(state)
    }

    /// Ends the lane: every stream fails with `error` and every waiter is woken.
    fn fail(&mut self, error: LaneError) {
        if self.ended.is_some() {
            return;
        }
        for entry in self.streams.values_mut() {
            entry.fail(error.clone());
        }
        self.ended = Some(error);
        // The connection ends now, not when the last handle of the lane is dropped (what was
        // queued still leaves before the FIN).
        let _ = socket2::SockRef::from(self.out.io.get_ref()).shutdown(std::net::Shutdown::Both);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.wake();
        }
        self.pings.waiters.drain(..).for_each(Waker::wake);
        self.out.room.drain(..).for_each(Waker::wake);
        self.out.wake_driver();
    }

    /// GOAWAY with `code` and `why`, then TLS close_notify, written as far as the socket takes them
    /// now (the lane ends right after), unless it already ended.
    fn goodbye(&mut self, code: u32, why: &str) {
        if self.ended.is_some() {
            return;
        }
        let mut payload = self.last_peer_id.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(why.as_bytes());
        let _ = self.out.frame(Head::new(frame::GOAWAY, 0, 0, payload.len()), &payload);
        let _ = self.out.io.queue_close();
        let _ = self.out.io.try_drain();
    }

    /// A connection error: GOAWAY with `code`, then the lane ends.
    fn broken(&mut self, (code, why): ConnError) -> LaneError {
        self.goodbye(code, why);
        let error = LaneError::Protocol(why);
        self.fail(error.clone());
        error
    }

    fn io_failed(&mut self, e: &io::Error) -> LaneError {
        let error = LaneError::Io(e.to_string());
        self.fail(error.clone());
        error
    }

    /// Closes the lane: GOAWAY and TLS close_notify go out, and every stream fails.
    pub(crate) fn close(&mut self) {
        self.goodbye(frame::NO_ERROR, "");
        self.fail(LaneError::Closed);
    }

    pub(crate) fn ended(&self) -> Option<&LaneError> {
        self.ended.as_ref()
    }

    /// The driver's turn: read and handle what arrived, write what waits.
    pub(crate) fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LaneError>> {
        if let Some(ended) = &self.ended {
            return Poll::Ready(ended.outcome());
        }
        if !self.out.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.out.driver = Some(cx.waker().clone());
        }
        for turn in 0.. {
            if turn == RECORDS_PER_TURN {
                cx.waker().wake_by_ref();
                break;
            }
            // A peer that does not read what it asks for (PING and SETTINGS acks, window updates)
            // is not read further until the output drains: what it can make this side hold is
            // bounded.
            if self.out.io.queued() >= OUTPUT_HIGH * 2 {
                break;
            }
            // An input read to its end starts over at the front of its buffer when no kept DATA
            // still holds a part of it (nothing moves, nothing is allocated), so each message
            // lands in the same few cache lines.
            let reclaimed = self.input.is_empty() && self.input.try_reclaim(READ_ROOM);
            if !reclaimed && self.input.capacity() - self.input.len() < MAX_PLAINTEXT {
                self.input.reserve(READ_ROOM);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.out.io), cx, &mut self.input) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    self.fail(LaneError::Closed);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(_)) => {
                    if let Err(error) = self.process() {
                        return Poll::Ready(Err(self.broken(error)));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_failed(&e))),
            }
        }
        if self.input.is_empty() && self.input.capacity() > KEEP_INPUT {
            self.input = BytesMut::new();
        }
        match Pin::new(&mut self.out.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => self.out.room.drain(..).for_each(Waker::wake),
            Poll::Pending => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_failed(&e))),
        }
        match &self.ended {
            Some(ended) => Poll::Ready(ended.outcome()),
            None => Poll::Pending,
        }
    }

    /// Handles every whole frame in the input.
    fn process(&mut self) -> Result<(), ConnError> {
        if !self.preface_seen {
            let Some(preface) = self.input.get(..frame::PREFACE.len()) else {
                return Ok(());
            };
            if preface != frame::PREFACE {
                return Err((frame::PROTOCOL_ERROR, "not an HTTP/2 preface"));
            }
            self.input.advance(frame::PREFACE.len());
            self.preface_seen = true;
        }
        while let Some(head) = Head::decode(&self.input) {
            if head.len > MAX_FRAME as usize {
                return Err((frame::FRAME_SIZE_ERROR, "a frame larger than this side allows"));
            }
            if self.input.len() < frame::HEAD + head.len {
                self.input.reserve(frame::HEAD + head.len - self.input.len());
                break;
            }
            if !self.settings_seen && (head.kind != frame::SETTINGS || head.flags & frame::ACK != 0) {
                return Err((frame::PROTOCOL_ERROR, "the first frame was not SETTINGS"));
            }
            if head.kind == frame::DATA && head.stream != 0 {
                self.on_data(head)?;
                continue;
            }
            let payload = self.input.split_to(frame::HEAD + head.len).freeze().slice(frame::HEAD..);
            self.on_frame(head, payload)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        let on_stream = head.stream != 0;
        let io = |e: io::Error| {
            tracing::debug!(error = %e, "lane output failed");
            (frame::PROTOCOL_ERROR, "the output failed")
        };
        match head.kind {
            frame::HEADERS if on_stream => self.on_headers(head, &payload),
            frame::PRIORITY if on_stream => Ok(()),
            frame::RST_STREAM if on_stream => {
                let code = frame::u31(&payload).filter(|_| head.len == 4);
                let code = code.ok_or((frame::FRAME_SIZE_ERROR, "a RST_STREAM of the wrong size"))?;
                let idle = self.is_idle(head.stream);
                match self.streams.get_mut(&head.stream) {
                    Some(entry) => {
                        (entry.sent_end, entry.received_end) = (true, true);
                        entry.fail(LaneError::Reset(code));
                        Ok(())
                    }
                    None if idle => Err((frame::PROTOCOL_ERROR, "RST_STREAM on an idle stream")),
                    None => Ok(()),
                }
            }
            frame::SETTINGS if !on_stream => self.on_settings(head, &payload),
            frame::PUSH_PROMISE => Err((frame::PROTOCOL_ERROR, "PUSH_PROMISE, which this side disabled")),
            frame::PING if !on_stream => {
                if head.len != 8 {
                    return Err((frame::FRAME_SIZE_ERROR, "a PING of the wrong size"));
                }
                if head.flags & frame::ACK == 0 {
                    return self.out.frame(Head::new(frame::PING, frame::ACK, 0, 8), &payload).map_err(io);
                }
                if payload[..] == self.pings.sent.to_be_bytes() {
                    self.pings.acked = self.pings.sent;
                    self.pings.waiters.drain(..).for_each(Waker::wake);
                }
                Ok(())
            }
            frame::GOAWAY if !on_stream => {
                let last = frame::u31(&payload).filter(|_| head.len >= 8);
                let last = last.ok_or((frame::FRAME_SIZE_ERROR, "a GOAWAY of the wrong size"))?;
                self.going_away = true;
                let client = self.client;
                for (id, entry) in &mut self.streams {
                    if client && *id > last {
                        entry.fail(LaneError::GoingAway);
                    }
                }
                Ok(())
            }
            frame::WINDOW_UPDATE => self.on_window_update(head, &payload),
            frame::CONTINUATION => Err((frame::PROTOCOL_ERROR, "CONTINUATION, outside the lane's profile")),
            frame::DATA | frame::HEADERS | frame::PRIORITY | frame::RST_STREAM => {
                Err((frame::PROTOCOL_ERROR, "a stream frame on the connection"))
            }
            frame::SETTINGS | frame::PING | frame::GOAWAY => {
                Err((frame::PROTOCOL_ERROR, "a connection frame on a stream"))
            }
            _ => Ok(()),
        }
    }

    /// Whether `id` names a stream that was never opened.
    fn is_idle(&self, id: u32) -> bool {
        match (self.client, id % 2 == 1) {
            (true, true) => id >= self.next_id,
            (false, true) => id > self.last_peer_id,
            // Servers never open streams here.
            (_, false) => true,
        }
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.flags & frame::ACK != 0 {
            return if head.len == 0 {
                Ok(())
            } else {
                Err((frame::FRAME_SIZE_ERROR, "a SETTINGS ack with a payload"))
            };
        }
        let pairs = frame::parse_settings(payload).ok_or((frame::FRAME_SIZE_ERROR, "a SETTINGS of the wrong size"))?;
        for (id, value) in pairs {
            match id {
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err((frame::FLOW_CONTROL_ERROR, "an initial window over 2^31-1"));
                    }
                    let delta = value - self.peer.initial_window;
                    self.peer.initial_window = value;
                    for entry in self.streams.values_mut() {
                        entry.send_window += delta;
                        if entry.send_window > frame::MAX_WINDOW {
                            return Err((frame::FLOW_CONTROL_ERROR, "a stream window over 2^31-1"));
                        }
                        if delta > 0 && entry.blocked {
                            entry.wake();
                        }
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..1 << 24).contains(&value) {
                        return Err((frame::PROTOCOL_ERROR, "a maximum frame size out of range"));
                    }
                    self.peer.max_frame = value as usize;
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => self.peer.max_streams = value as usize,
                frame::SETTINGS_ENABLE_CONNECT_PROTOCOL if value <= 1 => self.peer.connect_protocol = value == 1,
                frame::SETTINGS_ENABLE_PUSH if value == 0 || (value == 1 && !self.client) => {}
                frame::SETTINGS_ENABLE_CONNECT_PROTOCOL | frame::SETTINGS_ENABLE_PUSH => {
                    return Err((frame::PROTOCOL_ERROR, "a boolean setting out of range"));
                }
                _ => {}
            }
        }
        self.settings_seen = true;
        self.out
            .frame(Head::new(frame::SETTINGS, frame::ACK, 0, 0), &[])
            .map_err(|_| (frame::PROTOCOL_ERROR, "the output failed"))
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        let increment = frame::u31(payload).filter(|_| head.len == 4);
        let increment = i64::from(increment.ok_or((frame::FRAME_SIZE_ERROR, "a WINDOW_UPDATE of the wrong size"))?);
        if head.stream == 0 {
            if increment == 0 {
                return Err((frame::PROTOCOL_ERROR, "a WINDOW_UPDATE of zero"));
            }
            self.flow.send += increment;
            if self.flow.send > frame::MAX_WINDOW {
                return Err((frame::FLOW_CONTROL_ERROR, "a connection window over 2^31-1"));
            }
            for entry in self.streams.values_mut().filter(|entry| entry.blocked) {
                entry.wake();
            }
            return Ok(());
        }
        let id = head.stream;
        let Some(entry) = self.streams.get_mut(&id) else {
            return if self.is_idle(id) {
                Err((frame::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"))
            } else {
                Ok(())
            };
        };
        entry.send_window += increment;
        if increment == 0 || entry.send_window > frame::MAX_WINDOW {
            self.reset(id, frame::FLOW_CONTROL_ERROR, "a stream window update of zero or over 2^31-1");
        } else if entry.blocked {
            entry.wake();
        }
        Ok(())
    }

    /// A stream error: RST_STREAM with `code`, and the stream's handle sees `why`.
    fn reset(&mut self, id: u32, code: u32, why: &'static str) {
        let _ = self.out.frame(Head::new(frame::RST_STREAM, 0, id, 4), &code.to_be_bytes());
        if let Some(entry) = self.streams.get_mut(&id) {
            (entry.sent_end, entry.received_end) = (true, true);
            entry.fail(LaneError::Protocol(why));
        }
    }

    fn on_headers(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.flags & frame::END_HEADERS == 0 {
            return Err((frame::PROTOCOL_ERROR, "a header block split over frames, outside the lane's profile"));
        }
        let block = frame::unpadded(head.flags, payload).ok_or((frame::PROTOCOL_ERROR, "padding past the frame"))?;
        let block = match head.flags & frame::PRIORITY_FLAG {
            0 => block,
            _ => block.get(5..).ok_or((frame::FRAME_SIZE_ERROR, "a HEADERS too short for its priority"))?,
        };
        let fields = match fields::decode(block) {
            Err(FieldsError::Representation) => {
                return Err((frame::COMPRESSION_ERROR, "a header block outside the lane's profile"));
            }
            decoded => decoded,
        };
        let end = head.flags & frame::END_STREAM != 0;
        if self.client { self.on_response(head.stream, fields, end) } else { self.on_request(head.stream, fields, end) }
    }

    fn on_request(&mut self, id: u32, fields: Decoded, end: bool) -> Result<(), ConnError> {
        if id.is_multiple_of(2) {
            return Err((frame::PROTOCOL_ERROR, "a client stream with an even id"));
        }
        if id <= self.last_peer_id {
            // Trailers are not part of a tunnel; a closed stream stays closed.
            self.reset(id, frame::STREAM_CLOSED, "more headers on a stream");
            return Ok(());
        }
        self.last_peer_id = id;
        let fields = match fields {
            Ok(fields) if is_request(&fields) => fields,
            _ => {
                self.reset(id, frame::PROTOCOL_ERROR, "a malformed request");
                return Ok(());
            }
        };
        if self.going_away || self.streams.len() >= MAX_STREAMS as usize {
            self.reset(id, frame::REFUSED_STREAM, "too many streams");
            return Ok(());
        }
        let mut entry = Entry::new(self.peer.initial_window);
        entry.received_end = end;
        self.streams.insert(id, entry);
        self.incoming.push_back(Opened { id, fields });
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.wake();
        }
        Ok(())
    }

    fn on_response(&mut self, id: u32, fields: Decoded, end: bool) -> Result<(), ConnError> {
        let idle = self.is_idle(id);
        let Some(entry) = self.streams.get_mut(&id) else {
            return if idle { Err((frame::PROTOCOL_ERROR, "a response on an idle stream")) } else { Ok(()) };
        };
        let answer = fields.ok().and_then(|fields| {
            let mut status = fields.iter().filter(|(name, _)| name == ":status");
            let value = status.next().filter(|_| status.next().is_none())?;
            let status = value.1.parse::<u16>().ok().filter(|s| (200..600).contains(s))?;
            let reason = fields.iter().find(|(name, _)| name == REASON).map(|(_, value)| value.clone());
            Some(Answered { status, reason })
        });
        match answer {
            Some(answer) if entry.answer.is_none() => {
                entry.answer = Some(answer);
                entry.received_end |= end;
                entry.wake();
            }
            _ => self.reset(id, frame::PROTOCOL_ERROR, "a malformed or second response"),
        }
        Ok(())
    }

    /// The DATA frame at the front of the input (whole), taken off it: what the stream's socket
    /// takes at once is written from the input itself; only what must wait is kept, as a slice of
    /// the input (no copy).
    fn on_data(&mut self, head: Head) -> Result<(), ConnError> {
        let (id, len, frame_len) = (head.stream, head.len as i64, frame::HEAD + head.len);
        self.flow.recv_left -= len;
        if self.flow.recv_left < 0 {
            return Err((frame::FLOW_CONTROL_ERROR, "more DATA than the connection window"));
        }
        let data = frame::unpadded_range(head.flags, &self.input[frame::HEAD..frame_len])
            .ok_or((frame::PROTOCOL_ERROR, "padding past the frame"))?;
        let data = frame::HEAD + data.start..frame::HEAD + data.end;
        let idle = self.is_idle(id);
        let mut kept = false;
        let consumed = match self.streams.get_mut(&id) {
            None if idle => return Err((frame::PROTOCOL_ERROR, "DATA on an idle stream")),
            // A stream this side closed: its window comes back, its bytes go nowhere.
            None => Err(None),
            Some(entry) if entry.recv_left < len || entry.received_end => {
                Err(Some(if entry.received_end { frame::STREAM_CLOSED } else { frame::FLOW_CONTROL_ERROR }))
            }
            Some(entry) => {
                entry.recv_left -= len;
                entry.received += data.len() as u64;
                let mut consumed = len - data.len() as i64;
                if entry.failed.is_some() {
                    consumed = len;
                } else if !data.is_empty() {
                    if let Some(tap) = &entry.tap {
                        tap.offer(TapDirection::ToService, &Bytes::copy_from_slice(&self.input[data.clone()]));
                    }
                    let written = entry.write_now(&self.input[data.clone()]);
                    consumed += written as i64;
                    if written < data.len() && entry.failed.is_none() {
                        let rest = data.start + written..data.end;
                        if backlog::slices(rest.len(), data.len()) {
                            let frame = self.input.split_to(frame_len).freeze();
                            entry.backlog.hold_slice(frame.slice(rest));
                            kept = true;
                        } else {
                            entry.backlog.hold_copy(&self.input[rest]);
                        }
                        entry.kept();
                    }
                }
                if head.flags & frame::END_STREAM != 0 {
                    entry.received_end = true;
                    entry.wake();
                }
                Ok(consumed)
            }
        };
        if !kept {
            self.input.advance(frame_len);
        }
        match consumed {
            Ok(consumed) => self.credit(Some(id), consumed),
            Err(refused) => {
                if let Some(code) = refused {
                    self.reset(id, code, "DATA past the stream's window or end");
                }
                self.credit(None, len);
            }
        }
        Ok(())
    }

    /// `n` bytes of `id` (or of a stream gone) were consumed: windows are returned once a quarter
    /// of them is.
    fn credit(&mut self, id: Option<u32>, n: i64) {
        if n == 0 {
            return;
        }
        if let Some(id) = id
            && let Some(entry) = self.streams.get_mut(&id)
        {
            entry.unacked += n;
            if entry.unacked >= i64::from(STREAM_WINDOW) / RETURN_AT_DIVISOR && !entry.received_end {
                let increment = std::mem::take(&mut entry.unacked);
                entry.recv_left += increment;
                let _ = self.out.frame(Head::new(frame::WINDOW_UPDATE, 0, id, 4), &(increment as u32).to_be_bytes());
            }
        }
        self.flow.unacked += n;
        if self.flow.unacked >= i64::from(CONNECTION_WINDOW) / RETURN_AT_DIVISOR {
            let increment = std::mem::take(&mut self.flow.unacked);
            self.flow.recv_left += increment;
            let _ = self.out.frame(Head::new(frame::WINDOW_UPDATE, 0, 0, 4), &(increment as u32).to_be_bytes());
        }
    }

    /// Opens a stream with a HEADERS frame of `fields`. Its flush is left to the driver or to the
    /// stream's first DATA, whichever comes first, so a request and the first bytes after it can
    /// leave in one write.
    pub(crate) fn open(&mut self, fields: &[(&str, &str)]) -> Result<u32, LaneError> {
        if let Some(ended) = &self.ended {
            return Err(ended.clone());
        }
        if self.going_away || self.next_id > frame::MAX_WINDOW as u32 {
            return Err(LaneError::GoingAway);
        }
        if self.streams.len() >= self.peer.max_streams {
            return Err(LaneError::Busy);
        }
        if !self.peer.connect_protocol {
            return Err(LaneError::Protocol("the peer does not offer extended CONNECT"));
        }
        let mut block = Vec::new();
        fields::encode(fields.iter().copied(), &mut block);
        if block.len() > self.peer.max_frame {
            return Err(LaneError::Protocol("a request larger than one frame"));
        }
        let id = self.next_id;
        let head = Head::new(frame::HEADERS, frame::END_HEADERS, id, block.len());
        self.out.frame(head, &block).map_err(|e| self.io_failed(&e))?;
        self.next_id += 2;
        self.streams.insert(id, Entry::new(self.peer.initial_window));
        self.out.wake_driver();
        Ok(id)
    }

    /// The next request the peer opened and has not reset since: a stream opened and reset at
    /// once costs this side no task and no connection to a target.
    pub(crate) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Opened>> {
        while let Some(opened) = self.incoming.pop_front() {
            match self.streams.get(&opened.id) {
                Some(entry) if entry.failed.is_none() => return Poll::Ready(Some(opened)),
                _ => self.forget(opened.id),
            }
        }
        if self.ended.is_some() {
            return Poll::Ready(None);
        }
        self.acceptor = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn poll_answer(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<Answered, LaneError>> {
        let entry = match self.streams.get_mut(&id) {
            Some(entry) => entry,
            None => return Poll::Ready(Err(LaneError::Closed)),
        };
        if let Some(answer) = &entry.answer {
            return Poll::Ready(Ok(answer.clone()));
        }
        if let Some(failed) = &entry.failed {
            return Poll::Ready(Err(failed.clone()));
        }
        entry.wait(cx);
        Poll::Pending
    }

    /// Answers a request with `status` and, if any, a `reason` (refusals end the stream there).
    pub(crate) fn respond(&mut self, id: u32, status: u16, reason: Option<&str>) -> Result<(), LaneError> {
        let entry = self.streams.get_mut(&id).ok_or(LaneError::Closed)?;
        if let Some(failed) = &entry.failed {
            return Err(failed.clone());
        }
        let end = reason.is_some();
        entry.sent_end |= end;
        let status = status.to_string();
        let mut block = Vec::new();
        fields::encode([(":status", status.as_str())], &mut block);
        if let Some(reason) = reason {
            fields::encode([(REASON, fields::field_value(reason).as_str())], &mut block);
        }
        let flags = frame::END_HEADERS | if end { frame::END_STREAM } else { 0 };
        let pushed =
            self.out.frame(Head::new(frame::HEADERS, flags, id, block.len()), &block).and_then(|()| self.out.push());
        pushed.map_err(|e| self.io_failed(&e))
    }

    /// Seals as much of `data` as the windows and the output allow now, as DATA of stream `id`
    /// (with END_STREAM after the last byte when `end`), and writes what the socket takes.
    /// Returns the bytes sealed; with `cx`, a stream that could seal none of them (or not its
    /// END_STREAM) is woken when it can.
    pub(crate) fn send(
        &mut self,
        id: u32,
        data: &[u8],
        end: bool,
        cx: Option<&Context<'_>>,
    ) -> Result<usize, LaneError> {
        let sent = match self.seal_data(id, data, end, cx) {
            Ok(sent) => sent,
            Err(SendError::Stream(e)) => return Err(e),
            Err(SendError::Output(e)) => return Err(self.io_failed(&e)),
        };
        match self.out.push() {
            Ok(()) => Ok(sent),
            Err(e) => Err(self.io_failed(&e)),
        }
    }

    fn seal_data(&mut self, id: u32, data: &[u8], end: bool, cx: Option<&Context<'_>>) -> Result<usize, SendError> {
        let Self { streams, out, flow, peer, ended, .. } = self;
        let entry = streams.get_mut(&id).ok_or(SendError::Stream(LaneError::Closed))?;
        if let Some(failed) = entry.failed.as_ref().or(ended.as_ref()) {
            return Err(SendError::Stream(failed.clone()));
        }
        let mut sent = 0;
        loop {
            let rest = &data[sent..];
            if rest.is_empty() && (!end || entry.sent_end) {
                return Ok(sent);
            }
            if out.io.queued() >= OUTPUT_HIGH {
                if let Some(cx) = cx {
                    out.room.push(cx.waker().clone());
                }
                out.wake_driver();
                return Ok(sent);
            }
            let window = entry.send_window.min(flow.send).max(0) as usize;
            let n = rest.len().min(window).min(peer.max_frame);
            if n == 0 && !rest.is_empty() {
                entry.blocked = true;
                if let Some(cx) = cx {
                    entry.wait(cx);
                }
                return Ok(sent);
            }
            entry.blocked = false;
            let last = end && n == rest.len();
            let head = Head::new(frame::DATA, if last { frame::END_STREAM } else { 0 }, id, n);
            out.frame(head, &rest[..n]).map_err(SendError::Output)?;
            (entry.send_window, flow.send) = (entry.send_window - n as i64, flow.send - n as i64);
            entry.sent_end |= last;
            sent += n;
        }
    }

    /// Whether stream `id` sent its END_STREAM.
    pub(crate) fn sent_end(&self, id: u32) -> bool {
        self.streams.get(&id).is_none_or(|entry| entry.sent_end)
    }

    /// From now on DATA of stream `id` goes to `socket` (what arrived before goes first, and to the
    /// tap too).
    pub(crate) fn attach(&mut self, id: u32, socket: Arc<TcpStream>, tap: Option<Arc<TapSender>>) {
        if let Some(entry) = self.streams.get_mut(&id) {
            if let Some(tap) = &tap {
                entry.backlog.chunks().for_each(|chunk| tap.offer(TapDirection::ToService, &chunk));
            }
            (entry.socket, entry.tap) = (Some(socket), tap);
        }
    }

    /// Writes what DATA of stream `id` its socket did not take yet; ready with the bytes received
    /// once the peer ended the stream and all of them were written, or with the stream's failure.
    pub(crate) fn poll_inbound(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<u64, LaneError>> {
        let mut consumed = 0;
        let polled = loop {
            let Some(entry) = self.streams.get_mut(&id) else {
                break Poll::Ready(Err(LaneError::Closed));
            };
            if let Some(failed) = &entry.failed {
                break Poll::Ready(Err(failed.clone()));
            }
            let Some(socket) = entry.socket.clone() else {
                break Poll::Ready(Err(LaneError::Closed));
            };
            if entry.backlog.is_empty() {
                if entry.received_end {
                    break Poll::Ready(Ok(entry.received));
                }
                entry.wait(cx);
                break Poll::Pending;
            }
            match socket.poll_write_ready(cx) {
                Poll::Pending => {
                    entry.wait(cx);
                    break Poll::Pending;
                }
                Poll::Ready(Err(e)) => break Poll::Ready(Err(LaneError::Local(e.kind()))),
                Poll::Ready(Ok(())) => {}
            }
            match socket.try_write(entry.backlog.front()) {
                Ok(n) => {
                    consumed += n as i64;
                    entry.backlog.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break Poll::Ready(Err(LaneError::Local(e.kind()))),
            }
        };
        if consumed > 0 {
            self.credit(Some(id), consumed);
            if let Err(e) = self.out.push() {
                return Poll::Ready(Err(self.io_failed(&e)));
            }
        }
        polled
    }

    /// Sends a PING unless one is out; ready once the peer answered the one out at `target`.
    pub(crate) fn poll_ping(&mut self, target: &mut Option<u64>, cx: &mut Context<'_>) -> Poll<Result<(), LaneError>> {
        if let Some(ended) = &self.ended {
            return Poll::Ready(Err(ended.clone()));
        }
        let target = match *target {
            Some(target) => target,
            None => {
                if self.pings.sent == self.pings.acked {
                    self.pings.sent += 1;
                    let payload = self.pings.sent.to_be_bytes();
                    let pushed =
                        self.out.frame(Head::new(frame::PING, 0, 0, 8), &payload).and_then(|()| self.out.push());
                    if let Err(e) = pushed {
                        return Poll::Ready(Err(self.io_failed(&e)));
                    }
                }
                *target.insert(self.pings.sent)
            }
        };
        if self.pings.acked >= target {
            return Poll::Ready(Ok(()));
        }
        self.pings.waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// The handle of stream `id` is gone: unless both ends finished, the stream is reset; DATA it
    /// did not deliver returns its window to the connection.
    pub(crate) fn forget(&mut self, id: u32) {
        let Some(entry) = self.streams.remove(&id) else {
            return;
        };
        self.credit(None, entry.backlog.len() as i64);
        if self.ended.is_none() && !(entry.sent_end && entry.received_end) {
            let _ = self.out.frame(Head::new(frame::RST_STREAM, 0, id, 4), &frame::CANCEL.to_be_bytes());
        }
        if self.ended.is_none() && self.out.io.queued() > 0 && self.out.push().is_err() {
            self.fail(LaneError::Closed);
        }
    }
}

/// A request as a tunnel is opened: `:method` and `:path` present once each, pseudo-fields first.
fn is_request(fields: &[(String, String)]) -> bool {
    let pseudo = fields.iter().take_while(|(name, _)| name.starts_with(':')).count();
    let once = |name: &str| fields[..pseudo].iter().filter(|(n, _)| n == name).count() == 1;
    let known = |name: &str| matches!(name, ":method" | ":path" | ":scheme" | ":authority" | ":protocol");
    once(":method")
        && once(":path")
        && fields[..pseudo].iter().all(|(name, _)| known(name))
        && fields[pseudo..].iter().all(|(name, _)| !name.starts_with(':'))
}
