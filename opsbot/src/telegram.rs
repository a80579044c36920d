//! The Telegram layer (teloxide): long-polls `getUpdates`, turns messages and
//! button presses into [`Incoming`], hands them to the [`BotHandler`] and
//! sends its [`Reply`] values back (long texts as files, charts as photos,
//! confirmations with inline buttons). Progress notices of running rolls are
//! posted as they come.
//!
//! No command logic here. The token is never logged: transport errors are
//! redacted before they reach a log line.

use crate::audit::AuditLog;
use crate::bot::{BotHandler, HandlerSettings, Incoming, IncomingKind, Notice, Reply};
use crate::config::Secret;
use crate::ops::{Engine, Operations};
use chrono::Utc;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use teloxide::Bot;
use teloxide::payloads::{
    AnswerCallbackQuerySetters, GetUpdatesSetters, SendDocumentSetters, SendMessageSetters,
    SendPhotoSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{
    AllowedUpdate, CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile,
    UpdateKind,
};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_util::sync::CancellationToken;

/// The bot could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// The configured API URL is not a URL.
    #[error("invalid telegram.api_url {0}")]
    InvalidApiUrl(String),
    /// `getMe` failed: wrong token or no connection.
    #[error("telegram getMe failed: {0}")]
    GetMe(String),
}

/// How the layer talks to Telegram.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Long-polling time-out of `getUpdates`.
    pub poll_timeout: Duration,
    /// Longer texts are sent as a file.
    pub max_message_chars: usize,
}

/// Replaces the token in an error text (reqwest errors include the URL,
/// which contains the token).
fn redact(text: String, token: &str) -> String {
    if token.is_empty() {
        text
    } else {
        text.replace(token, "**REDACTED**")
    }
}

fn random_token() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A teloxide bot for `token`, pointed at `api_url` when given.
pub fn make_bot(token: &Secret, api_url: Option<&str>) -> Result<Bot, TelegramError> {
    let bot = Bot::new(token.expose());
    match api_url {
        Some(text) => {
            let url = url::Url::parse(text)
                .map_err(|_| TelegramError::InvalidApiUrl(text.to_string()))?;
            Ok(bot.set_api_url(url))
        }
        None => Ok(bot),
    }
}

/// Runs the bot over the engine until `shutdown`.
pub async fn run_bot(
    engine: Arc<Engine>,
    token: &Secret,
    shutdown: CancellationToken,
) -> Result<(), TelegramError> {
    let config = engine.config().clone();
    let bot = make_bot(token, config.telegram.api_url.as_deref())?;
    let (notices_sender, notices) = unbounded_channel();
    let settings = HandlerSettings {
        policy: config.telegram.access_policy(),
        confirm_ttl: config.telegram.confirm_ttl,
        default_window: config.slowlog.default_window,
        slowlog_top: config.slowlog.top,
        roll_settings: config.restart.roll_settings(false),
        bot_username: None,
    };
    let metrics = engine.metrics().clone();
    let handler = BotHandler::new(
        engine,
        settings,
        AuditLog::new(config.audit.path.clone()),
        notices_sender,
    )
    .with_metrics(metrics);
    let options = ServeOptions {
        poll_timeout: config.telegram.poll_timeout,
        max_message_chars: config.telegram.max_message_chars,
    };
    serve(
        bot,
        token.expose().to_string(),
        handler,
        notices,
        options,
        shutdown,
    )
    .await
}

/// The polling loop: `getMe`, then `getUpdates` until `shutdown`, with a
/// growing pause after errors. `token` is only used to redact error texts.
pub async fn serve<O: Operations>(
    bot: Bot,
    token: String,
    mut handler: BotHandler<O>,
    mut notices: UnboundedReceiver<Notice>,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), TelegramError> {
    let me = bot
        .get_me()
        .await
        .map_err(|error| TelegramError::GetMe(redact(error.to_string(), &token)))?;
    let username = me.username().to_string();
    tracing::info!(bot = %username, "telegram bot started");
    handler.set_bot_username(Some(username));

    let notice_bot = bot.clone();
    let notice_token = token.clone();
    let notice_task = tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            if let Err(error) = notice_bot
                .send_message(ChatId(notice.chat_id), notice.text)
                .await
            {
                tracing::warn!(error = %redact(error.to_string(), &notice_token), "failed to post progress");
            }
        }
    });

    let poll_seconds = u32::try_from(options.poll_timeout.as_secs()).unwrap_or(30);
    let mut offset: i32 = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        let request = bot
            .get_updates()
            .offset(offset)
            .timeout(poll_seconds)
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        let updates = tokio::select! {
            () = shutdown.cancelled() => break,
            result = request => result,
        };
        let updates = match updates {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                updates
            }
            Err(error) => {
                tracing::warn!(error = %redact(error.to_string(), &token), "getUpdates failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        for update in updates {
            offset = offset.max(
                i32::try_from(update.id.0)
                    .unwrap_or(i32::MAX)
                    .saturating_add(1),
            );
            let Some(incoming) = incoming_of(update.kind) else {
                continue;
            };
            let chat_id = incoming.chat_id;
            let replies = handler.handle(incoming, Utc::now(), random_token).await;
            deliver(&bot, &token, chat_id, replies, &options).await;
        }
    }
    notice_task.abort();
    tracing::info!("telegram bot stopped");
    Ok(())
}

fn incoming_of(kind: UpdateKind) -> Option<Incoming> {
    match kind {
        UpdateKind::Message(message) => {
            let text = message.text()?.to_string();
            let user = message.from.as_ref()?;
            Some(Incoming {
                chat_id: message.chat.id.0,
                user_id: user.id.0,
                user_name: user.username.clone(),
                kind: IncomingKind::Text(text),
            })
        }
        UpdateKind::CallbackQuery(query) => {
            let chat_id = query.message.as_ref()?.chat().id.0;
            Some(Incoming {
                chat_id,
                user_id: query.from.id.0,
                user_name: query.from.username.clone(),
                kind: IncomingKind::Button {
                    callback_id: query.id.0.clone(),
                    data: query.data.clone().unwrap_or_default(),
                },
            })
        }
        _ => None,
    }
}

async fn deliver(
    bot: &Bot,
    token: &str,
    chat_id: i64,
    replies: Vec<Reply>,
    options: &ServeOptions,
) {
    let chat = ChatId(chat_id);
    for reply in replies {
        let result = match reply {
            Reply::Text(text) if text.chars().count() > options.max_message_chars => bot
                .send_document(
                    chat,
                    InputFile::memory(text.into_bytes()).file_name("reply.txt"),
                )
                .caption("long answer attached")
                .await
                .map(drop),
            Reply::Text(text) => bot.send_message(chat, text).await.map(drop),
            Reply::File {
                name,
                bytes,
                caption,
            } => bot
                .send_document(chat, InputFile::memory(bytes).file_name(name))
                .caption(caption)
                .await
                .map(drop),
            Reply::Photo { bytes, caption } => bot
                .send_photo(chat, InputFile::memory(bytes).file_name("chart.png"))
                .caption(caption)
                .await
                .map(drop),
            Reply::Confirm {
                text,
                token: confirm_token,
            } => {
                let keyboard = InlineKeyboardMarkup::new([[
                    InlineKeyboardButton::callback("Confirm", format!("ok:{confirm_token}")),
                    InlineKeyboardButton::callback("Cancel", format!("no:{confirm_token}")),
                ]]);
                let text = if text.chars().count() > options.max_message_chars {
                    let cut: String = text.chars().take(options.max_message_chars).collect();
                    format!("{cut}\n… (cut; the whole plan: /restart <target> dry)")
                } else {
                    text
                };
                bot.send_message(chat, text)
                    .reply_markup(keyboard)
                    .await
                    .map(drop)
            }
            Reply::ButtonAnswer { callback_id, text } => bot
                .answer_callback_query(CallbackQueryId(callback_id))
                .text(text)
                .await
                .map(drop),
        };
        if let Err(error) = result {
            tracing::warn!(chat_id, error = %redact(error.to_string(), token), "failed to send reply");
        }
    }
}
