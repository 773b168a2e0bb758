//! Request bodies, read whole but never past a limit.

use crate::error::ApiError;
use worker::Request;

/// The raw body, refused with 413 when the declared or actual length exceeds `limit`.
pub async fn bounded(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let body = req.bytes().await?;
    if body.len() > limit {
        return Err(ApiError::TooLarge { limit });
    }
    Ok(body)
}
