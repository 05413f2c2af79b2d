//! Bodies passing through: read a bounded prefix and replay it, and notice an
//! upstream that breaks off its response.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use tokio::sync::oneshot;

use super::{ClientBodyError, Outcome};
use crate::reply::{Body, BoxError};

/// Frames already read from a body, sent again, then the rest of that body.
#[derive(Debug)]
pub struct Replay<B> {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<B>,
    /// The error the body failed with after `frames`, given out last.
    error: Option<BoxError>,
}

impl<B> Replay<B> {
    fn new(frames: Vec<Frame<Bytes>>, rest: Option<B>, error: Option<BoxError>) -> Self {
        Replay {
            frames: frames.into(),
            rest,
            error,
        }
    }
}

impl<B> HttpBody for Replay<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None if self.error.is_none() => SizeHint::with_exact(buffered),
            None => SizeHint::default(),
            Some(rest) => {
                let h = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + buffered);
                if let Some(upper) = h.upper() {
                    out.set_upper(upper + buffered);
                }
                out
            }
        }
    }
}

/// A request body on its way to the upstream: its errors are marked as the client's,
/// and its end is signalled, which starts `upstream.timeout`.
#[derive(Debug)]
pub struct Outgoing {
    inner: Body,
    sent: Option<oneshot::Sender<()>>,
}

impl Outgoing {
    pub(super) fn new(inner: Body, sent: Option<oneshot::Sender<()>>) -> Self {
        Outgoing { inner, sent }
    }

    fn finish(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl HttpBody for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.finish();
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e)))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                // hyper stops polling a body that says it has ended.
                if self.inner.is_end_stream() {
                    self.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read up to a limit.
#[derive(Debug)]
pub enum Prefix<B> {
    /// The whole body, within the limit: its bytes, and its frames to send on unchanged.
    Whole(Bytes, Replay<B>),
    /// More than the limit: what was read, then the rest, unread.
    Over(Replay<B>),
    /// The body failed: what was read, then its error.
    Broken(Replay<B>),
}

/// Reads `body` until its end or until more than `limit` bytes came, keeping every
/// frame (trailers included) so that it can be sent on as it was received.
pub async fn read_prefix<B>(mut body: B, limit: u64) -> Prefix<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut frames = Vec::new();
    let mut len: u64 = 0;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Prefix::Broken(Replay::new(frames, None, Some(e.into()))),
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    len += d.len() as u64;
                }
                frames.push(frame);
                if len > limit {
                    return Prefix::Over(Replay::new(frames, Some(body), None));
                }
            }
        }
    }
    let data = concat(&frames, len);
    Prefix::Whole(data, Replay::new(frames, None, None))
}

fn concat(frames: &[Frame<Bytes>], len: u64) -> Bytes {
    let mut data = frames.iter().filter_map(Frame::data_ref);
    match (data.next(), data.next()) {
        (None, _) => Bytes::new(),
        (Some(one), None) => one.clone(),
        _ => {
            let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
            for d in frames.iter().filter_map(Frame::data_ref) {
                buf.extend_from_slice(d);
            }
            buf.freeze()
        }
    }
}

/// An upstream response body that logs and records it if the upstream breaks it off.
/// The error is passed on, so hyper ends the client's response visibly: HTTP/1.1
/// closes the connection without the final chunk, HTTP/2 resets the stream.
#[derive(Debug)]
pub struct Watched<B> {
    inner: B,
    span: tracing::Span,
}

impl<B> Watched<B> {
    pub fn new(inner: B) -> Self {
        Watched {
            inner,
            span: tracing::Span::current(),
        }
    }
}

impl<B> HttpBody for Watched<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                self.span.in_scope(|| {
                    tracing::warn!(error = %e, "the upstream broke off its response body; the client's response is cut");
                    super::record(Outcome::BodyAborted);
                });
                Poll::Ready(Some(Err(e)))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body of several data frames.
    struct Chunks(VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(parts: &[&'static str]) -> Chunks {
        Chunks(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn whole_body_within_the_limit_is_replayed_unchanged() {
        let Prefix::Whole(data, replay) = read_prefix(chunks(&["ab", "cd"]), 4).await else {
            panic!("within the limit");
        };
        assert_eq!(data, "abcd");
        let again = replay.collect().await.unwrap().to_bytes();
        assert_eq!(again, "abcd");
    }

    #[tokio::test]
    async fn over_the_limit_replays_the_prefix_then_the_rest() {
        let Prefix::Over(replay) = read_prefix(chunks(&["ab", "cd", "ef"]), 3).await else {
            panic!("over the limit");
        };
        assert_eq!(replay.collect().await.unwrap().to_bytes(), "abcdef");
        let Prefix::Whole(data, _) = read_prefix(Full::new(Bytes::new()), 0).await else {
            panic!("empty is within any limit");
        };
        assert!(data.is_empty());
    }
}
