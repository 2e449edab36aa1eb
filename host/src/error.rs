//! The one error type clients see: a stable machine `code`, a human `message`, and the HTTP
//! status (or WebSocket error frame) it maps to.
//!
//! Internal causes (database errors, I/O) are logged here and replaced by a generic message:
//! a client never sees a stack of internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthenticated { code: &'static str, message: String },
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// What the request names existed and is gone for good (a revoked webhook).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("{message}")]
    PayloadTooLarge { code: &'static str, message: String },
    #[error("{message}")]
    RequestTimeout { code: &'static str, message: String },
    /// Well-formed, but its content is refused (a file a virus scanner flagged).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after_ms: u64,
    },
    /// A plugin refused the action; `code` and `reason` are the plugin's own.
    #[error("rejected by plugin {plugin}: {reason}")]
    Rejected {
        plugin: String,
        code: String,
        reason: String,
    },
    /// A plugin refused an uploaded file (`file-pre-upload`); nothing was kept.
    #[error("file rejected by plugin {plugin}: {reason}")]
    FileRejected {
        plugin: String,
        code: String,
        reason: String,
    },
    /// A plugin refused a download (`file-pre-download`).
    #[error("download denied by plugin {plugin}: {reason}")]
    DownloadDenied { plugin: String, reason: String },
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
    /// The one answer for a room the caller may not see: non-members cannot tell it from a
    /// room that does not exist.
    pub fn room_not_found() -> Self {
        Self::not_found("room_not_found", "no such room, or you are not a member")
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::PayloadTooLarge {
            code,
            message: message.into(),
        }
    }
    pub fn request_timeout(code: &'static str, message: impl Into<String>) -> Self {
        Self::RequestTimeout {
            code,
            message: message.into(),
        }
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
        }
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Gone { code, .. }
            | Self::PayloadTooLarge { code, .. }
            | Self::RequestTimeout { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::Rejected { .. } => "message_rejected",
            Self::FileRejected { .. } => "file_rejected",
            Self::DownloadDenied { .. } => "download_denied",
            Self::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::Rejected { .. } | Self::DownloadDenied { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::FileRejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body (also the payload of a WebSocket `error` frame).
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Self::Internal(_) => "internal server error".to_string(),
            Self::Unauthenticated { message, .. } => message.clone(),
            Self::Rejected { reason, .. }
            | Self::FileRejected { reason, .. }
            | Self::DownloadDenied { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        let rejection = match self {
            Self::Rejected { plugin, code, .. } | Self::FileRejected { plugin, code, .. } => {
                Some(Rejection {
                    plugin: plugin.clone(),
                    code: code.clone(),
                })
            }
            Self::DownloadDenied { plugin, .. } => Some(Rejection {
                plugin: plugin.clone(),
                code: "denied".into(),
            }),
            _ => None,
        };
        let retry_after_ms = match self {
            Self::TooManyRequests { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        };
        ErrorBody {
            code: self.code().to_string(),
            message,
            rejection,
            retry_after_ms,
        }
    }

    /// Log causes that clients are not shown.
    pub fn log(&self) {
        if let Self::Internal(err) = self {
            tracing::error!(error = ?err, "internal error");
        }
    }
}

/// The body of every error answer: a stable `code` to branch on and a `message` for people.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rejection: Option<Rejection>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after_ms: Option<u64>,
}

/// Which plugin rejected a message, and its own code for why.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Rejection {
    pub plugin: String,
    pub code: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Self::TooManyRequests { retry_after_ms, .. } = self {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(value) = secs.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::not_found("not_found", "not found"),
            StoreError::Conflict(code) => Self::conflict(code, conflict_message(code)),
            StoreError::Refused(detail) => {
                // The database's text can name tables and constraints: log it, don't show it.
                tracing::warn!(%detail, "the database refused a row");
                Self::bad_request(
                    "value_refused",
                    "the database refused a value in this request; nothing was stored",
                )
            }
            other => Self::internal(other),
        }
    }
}

fn conflict_message(code: &str) -> &'static str {
    match code {
        "user_exists" => "a user with that name already exists",
        "already_member" => "the user is already a member of the room",
        "message_deleted" => "the message has been deleted",
        "not_author" => "only the author may edit a message",
        "not_a_message" => "the target is not a message",
        "nested_thread" => "that message is itself a reply: use its thread's root instead",
        "too_many_reactions" => {
            "the message has as many different reactions as a message may have: use one of them"
        }
        "too_many_pins" => "the room has as many pins as it may have: unpin one first",
        "file_unavailable" => {
            "a file is not available to attach (already attached, or not yours in this room)"
        }
        _ => "the request conflicts with the current state",
    }
}
