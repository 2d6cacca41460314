//! Streamed replies: the events a reader sees while the tutor answers, in order.
//!
//! The answering runs in a task of its own, not in the response: a reader who goes away
//! mid-answer stops receiving, but the answer is still written to its end and stored, so a
//! reload shows it whole. The events go through an unbounded channel, so a slow reader never
//! holds the model up (an answer is a few kilobytes); the response ends when the task has
//! stored the reply and sent its last event.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::domain::conversations::{Citation, Message};
use crate::error::Error;

/// One event of a streamed reply.
#[derive(Debug)]
pub enum ReplyEvent {
    /// The stored user message, first, before the model is asked.
    UserMessage(Message),
    /// The next fragment of the answer's text.
    Delta(String),
    /// The passages the answer rests on, once it is complete.
    Citations(Vec<Citation>),
    /// The stored answer; the last event.
    Done(Message),
    /// The stored failure notice (`is_error`, `error_details`), which can be retried; the last
    /// event.
    Error(Message),
    /// A failure that left nothing stored (the database went away, another request still
    /// answers this message), with the id of the request it happened in; the last event.
    Failed(Error, Option<String>),
}

/// The events of one streamed reply; it ends after `Done`, `Error` or `Failed`.
#[derive(Debug)]
pub struct ReplyStream(mpsc::UnboundedReceiver<ReplyEvent>);

impl Stream for ReplyStream {
    type Item = ReplyEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ReplyEvent>> {
        self.0.poll_recv(cx)
    }
}

/// The sending side of a [`ReplyStream`]. Sending never fails: a reader who left is simply
/// not written to.
#[derive(Debug)]
pub(crate) struct ReplySender {
    events: mpsc::UnboundedSender<ReplyEvent>,
    text_sent: AtomicBool,
}

impl ReplySender {
    /// A sender and the stream it feeds.
    pub(crate) fn channel() -> (Self, ReplyStream) {
        let (events, receiver) = mpsc::unbounded_channel();
        (Self { events, text_sent: AtomicBool::new(false) }, ReplyStream(receiver))
    }

    /// Sends a fragment of the answer; empty ones are not worth an event.
    pub(crate) fn delta(&self, text: &str) {
        if !text.is_empty() {
            self.text_sent.store(true, Ordering::Relaxed);
            let _ = self.events.send(ReplyEvent::Delta(text.to_owned()));
        }
    }

    pub(crate) fn send(&self, event: ReplyEvent) {
        let _ = self.events.send(event);
    }

    /// The last events, for the outcome of answering: the answer (with its text as one
    /// fragment when none was streamed, as for a duplicate that found the reply stored), or
    /// the failure.
    pub(crate) fn finish(self, outcome: Result<Message, Error>) {
        match outcome {
            Ok(reply) if reply.is_error => self.send(ReplyEvent::Error(reply)),
            Ok(reply) => {
                if !self.text_sent.load(Ordering::Relaxed) {
                    self.delta(&reply.content);
                }
                self.send(ReplyEvent::Citations(reply.citations.0.clone()));
                self.send(ReplyEvent::Done(reply));
            }
            Err(e) => self.send(ReplyEvent::Failed(e, crate::infra::telemetry::current_request_id())),
        }
    }
}
