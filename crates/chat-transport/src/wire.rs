//! The WebSocket protocol of a chat socket, over actix-http's frame codec.
//!
//! The connection's task writes frames through a [`Sender`] and reads the
//! client's through a [`Receiver`]; the response body ([`Body`]) hands the
//! encoded bytes to actix-http. Sender and body share one small buffer that
//! holds memory only while bytes wait to be written, so an idle socket
//! keeps only the shared state itself here (about a hundred bytes). A
//! channel between the two, as actix-ws has, allocates its slots at the
//! handshake: about 1.8 KiB more per socket, idle or not.
//!
//! A client's fragmented message is put back together up to the frame
//! limit, and text must be UTF-8.

use std::convert::Infallible;
use std::future::poll_fn;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use actix_codec::{Decoder, Encoder};
use actix_http::body::{BodySize, MessageBody};
use actix_http::ws::{self, CloseReason, Codec, Frame, Item, Message, ProtocolError};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use bytestring::ByteString;
use futures_util::Stream;

/// While this many encoded bytes wait for the client, a write waits too:
/// a client that stops reading holds up its own connection's task, whose
/// queue then overflows, and nobody else.
const HIGH_WATER: usize = 32 * 1024;

/// Answers a WebSocket handshake: the `101` response to return, and the two
/// ends of the socket. Frames (and fragmented messages) longer than
/// `max_message` bytes are refused with [`Violation::TooLarge`].
pub(crate) fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    max_message: usize,
) -> Result<(HttpResponse, Sender, Receiver), ws::HandshakeError> {
    let mut response = ws::handshake(req.head())?;
    let shared = Arc::new(Shared::default());
    let body = Body {
        shared: Arc::clone(&shared),
    };
    let response = HttpResponse::from(response.body(body).map_into_boxed_body());
    let sender = Sender {
        shared: Arc::clone(&shared),
        codec: Codec::new(),
    };
    let receiver = Receiver {
        payload: payload.into_inner(),
        shared,
        codec: Codec::new().max_size(max_message),
        buf: BytesMut::new(),
        fragments: None,
        max_message,
        ended: false,
    };
    Ok((response, sender, receiver))
}

/// What the sender and the response body share. Both ends of one socket are
/// used by the connection's one task; the body is polled by actix-http.
#[derive(Debug, Default)]
struct Shared(Mutex<Wire>);

#[derive(Debug, Default)]
struct Wire {
    /// Encoded frames the response body has not taken yet.
    buf: BytesMut,
    /// The connection's task, waiting for room in `buf` or for the client.
    task: Option<Waker>,
    /// The response body, waiting for bytes.
    body: Option<Waker>,
    /// A close frame was written, or the sender is gone: the body ends once
    /// `buf` is taken.
    closing: bool,
    /// actix-http dropped the response body: the connection is gone.
    gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Wire> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps `slot` holding a waker that wakes `cx`'s task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The socket is closed: nothing more can be sent.
#[derive(Debug)]
pub(crate) struct Closed;

/// The writing end, held by the connection's task.
#[derive(Debug)]
pub(crate) struct Sender {
    shared: Arc<Shared>,
    codec: Codec,
}

impl Sender {
    /// Sends a text frame.
    pub(crate) async fn text(&mut self, text: ByteString) -> Result<(), Closed> {
        self.write(Message::Text(text)).await
    }

    /// Sends an empty ping.
    pub(crate) async fn ping(&mut self) -> Result<(), Closed> {
        self.write(Message::Ping(Bytes::new())).await
    }

    /// Answers a ping with its payload.
    pub(crate) async fn pong(&mut self, payload: Bytes) -> Result<(), Closed> {
        self.write(Message::Pong(payload)).await
    }

    /// Sends a close frame; nothing can be sent after it.
    pub(crate) async fn close(&mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        self.write(Message::Close(reason)).await
    }

    /// Encodes `message` once the client has taken enough of what waits.
    async fn write(&mut self, message: Message) -> Result<(), Closed> {
        let closes = matches!(message, Message::Close(_));
        let mut message = Some(message);
        poll_fn(|cx| {
            let mut wire = self.shared.lock();
            if wire.gone || wire.closing {
                return Poll::Ready(Err(Closed));
            }
            if wire.buf.len() >= HIGH_WATER {
                register(&mut wire.task, cx);
                return Poll::Pending;
            }
            let Some(message) = message.take() else {
                return Poll::Ready(Ok(()));
            };
            // Only continuation frames written out of order fail to encode,
            // and this sender writes none.
            if self.codec.encode(message, &mut wire.buf).is_err() {
                return Poll::Ready(Err(Closed));
            }
            wire.closing = closes;
            let body = wire.body.take();
            drop(wire);
            if let Some(body) = body {
                body.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut wire = self.shared.lock();
        wire.closing = true;
        let body = wire.body.take();
        drop(wire);
        if let Some(body) = body {
            body.wake();
        }
    }
}

/// The response body: what actix-http writes to the client.
#[derive(Debug)]
struct Body {
    shared: Arc<Shared>,
}

impl MessageBody for Body {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let mut wire = self.shared.lock();
        if !wire.buf.is_empty() {
            // Taken whole: the buffer's memory goes with the bytes, and an
            // idle socket keeps none.
            let bytes = mem::take(&mut wire.buf).freeze();
            let task = wire.task.take();
            drop(wire);
            if let Some(task) = task {
                task.wake();
            }
            return Poll::Ready(Some(Ok(bytes)));
        }
        if wire.closing {
            return Poll::Ready(None);
        }
        register(&mut wire.body, cx);
        Poll::Pending
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let mut wire = self.shared.lock();
        wire.gone = true;
        wire.buf = BytesMut::new();
        let task = wire.task.take();
        drop(wire);
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// A message from the client.
#[derive(Debug)]
pub(crate) enum Incoming {
    Text(ByteString),
    /// A binary message (its content is not needed).
    Binary,
    /// A ping, with the payload its pong must carry.
    Ping(Bytes),
    Pong,
    /// The client closes the socket.
    Close,
}

/// Why the client's bytes cannot be read on: the socket must close.
#[derive(Debug)]
pub(crate) enum Violation {
    /// A frame, or a fragmented message, longer than the limit.
    TooLarge,
    /// A text message that is not UTF-8.
    NotUtf8,
    /// Anything else RFC 6455 forbids (an unmasked frame, a bad opcode...).
    Protocol(ProtocolError),
}

/// A fragmented message being put back together.
#[derive(Debug)]
struct Fragments {
    bytes: BytesMut,
    text: bool,
}

/// The reading end, held by the connection's task.
pub(crate) struct Receiver {
    payload: actix_web::dev::Payload,
    shared: Arc<Shared>,
    codec: Codec,
    /// Bytes read but not yet decoded: a partial frame at most, between
    /// reads.
    buf: BytesMut,
    fragments: Option<Fragments>,
    max_message: usize,
    /// The client's stream ended.
    ended: bool,
}

impl Receiver {
    /// The client's next message; `None` once the connection is gone.
    /// Cancel-safe: what was read stays buffered here.
    pub(crate) async fn recv(&mut self) -> Option<Result<Incoming, Violation>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming, Violation>>> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => match self.assemble(frame) {
                    Ok(Some(incoming)) => return Poll::Ready(Some(Ok(incoming))),
                    Ok(None) => continue,
                    Err(violation) => return Poll::Ready(Some(Err(violation))),
                },
                Ok(None) => {}
                Err(ProtocolError::Overflow) => return Poll::Ready(Some(Err(Violation::TooLarge))),
                Err(error) => return Poll::Ready(Some(Err(Violation::Protocol(error)))),
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::from(bytes);
                    } else {
                        self.buf.extend_from_slice(&bytes);
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => self.ended = true,
                Poll::Pending => {
                    if self.buf.is_empty() && self.buf.capacity() > 0 {
                        self.buf = BytesMut::new();
                    }
                    let mut wire = self.shared.lock();
                    if wire.gone {
                        self.ended = true;
                        return Poll::Ready(None);
                    }
                    register(&mut wire.task, cx);
                    return Poll::Pending;
                }
            }
        }
    }

    /// Turns a frame into a message, or into part of one (`None`).
    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, Violation> {
        let incoming = match frame {
            Frame::Text(bytes) => Incoming::Text(utf8(bytes)?),
            Frame::Binary(_) => Incoming::Binary,
            Frame::Ping(bytes) => Incoming::Ping(bytes),
            Frame::Pong(_) => Incoming::Pong,
            Frame::Close(_) => Incoming::Close,
            Frame::Continuation(Item::FirstText(bytes)) => return self.begin(bytes, true),
            Frame::Continuation(Item::FirstBinary(bytes)) => return self.begin(bytes, false),
            Frame::Continuation(Item::Continue(bytes)) => {
                self.extend(&bytes)?;
                return Ok(None);
            }
            Frame::Continuation(Item::Last(bytes)) => {
                self.extend(&bytes)?;
                let Some(whole) = self.fragments.take() else {
                    return Err(Violation::Protocol(ProtocolError::ContinuationNotStarted));
                };
                if whole.text {
                    Incoming::Text(utf8(whole.bytes.freeze())?)
                } else {
                    Incoming::Binary
                }
            }
        };
        Ok(Some(incoming))
    }

    fn begin(&mut self, first: Bytes, text: bool) -> Result<Option<Incoming>, Violation> {
        self.fragments = Some(Fragments {
            bytes: BytesMut::from(first),
            text,
        });
        Ok(None)
    }

    fn extend(&mut self, more: &[u8]) -> Result<(), Violation> {
        let Some(fragments) = self.fragments.as_mut() else {
            return Err(Violation::Protocol(ProtocolError::ContinuationNotStarted));
        };
        if fragments.bytes.len() + more.len() > self.max_message {
            self.fragments = None;
            return Err(Violation::TooLarge);
        }
        fragments.bytes.extend_from_slice(more);
        Ok(())
    }
}

fn utf8(bytes: Bytes) -> Result<ByteString, Violation> {
    ByteString::try_from(bytes).map_err(|_| Violation::NotUtf8)
}
