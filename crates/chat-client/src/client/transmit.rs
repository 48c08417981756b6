//! Handing outbox entries to the connection, and failing for good the ones
//! the server can never take.

use std::time::Instant;

use chat_proto::rest;
use chat_proto::ws::{ClientFrame, SendGroupMessage, SendMessage};
use e2ee_store::OutboxEntry;

use super::Inner;
use crate::event::Event;

impl Inner {
    /// Sends an outbox entry now if connected. One the server could never
    /// accept (left by an older client) fails here instead of costing a
    /// connection on every attempt.
    pub(crate) async fn transmit(&self, e: &OutboxEntry) {
        // One copy per device shares one frame: the frame's size is what
        // the server limits.
        let frame_len: usize = e.content.len()
            + e.copies
                .iter()
                .map(|c| c.content.len() + c.user_id.len() + 96)
                .sum::<usize>();
        if frame_len + 512 > chat_proto::validate::FRAME_MAX {
            self.fail_send(
                &e.message_id,
                rest::ErrorCode::TooLarge,
                format!(
                    "{frame_len} bytes for {} devices, over the server's frame limit of {}",
                    e.copies.len(),
                    chat_proto::validate::FRAME_MAX
                ),
            )
            .await;
            return;
        }
        if !crate::limits::content_fits(&e.content)
            || e.copies
                .iter()
                .any(|c| !crate::limits::content_fits(&c.content))
        {
            self.fail_send(
                &e.message_id,
                rest::ErrorCode::TooLarge,
                format!(
                    "{} bytes of content, over the server's limit of {}",
                    e.content.len(),
                    chat_proto::validate::MESSAGE_CONTENT_MAX
                ),
            )
            .await;
            return;
        }
        let frame = match (&e.recipient, &e.group_id) {
            (_, Some(g)) => ClientFrame::GroupMessage(SendGroupMessage {
                id: e.message_id.clone(),
                group_id: g.clone(),
                content: e.content.clone(),
                message_type: "e2ee".into(),
            }),
            (Some(to), None) => ClientFrame::Message(SendMessage {
                id: e.message_id.clone(),
                to: to.clone(),
                content: e.content.clone(),
                message_type: "e2ee".into(),
                copies: e
                    .copies
                    .iter()
                    .map(|c| chat_proto::ws::DeviceCopy {
                        user_id: c.user_id.clone(),
                        device_id: c.device_id,
                        registration_id: c.registration_id,
                        content: c.content.clone(),
                    })
                    .collect(),
            }),
            (None, None) => return,
        };
        // Recorded first: the ack can be processed before `send` returns.
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(e.message_id.clone(), Instant::now());
        }
        if !self.send_frame(frame).await
            && let Ok(mut f) = self.in_flight.lock()
        {
            f.remove(&e.message_id);
        }
    }

    /// Takes a message out of the outbox as failed for good, and says so.
    pub(crate) async fn fail_send(&self, id: &str, code: rest::ErrorCode, message: String) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(id);
        }
        let mid = id.to_owned();
        let removed = self
            .db(move |s| s.write(|tx| tx.drop_outbox(&mid)))
            .await
            .unwrap_or(false);
        if removed {
            tracing::warn!(%id, ?code, %message, "message failed for good");
            self.emit(Event::Status {
                message_id: id.to_owned(),
                status: e2ee_store::Status::Failed,
            });
            self.emit(Event::SendFailed {
                message_id: id.to_owned(),
                code,
                message,
            });
        }
    }
}
