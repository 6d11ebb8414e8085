//! `POST /stores/{store}/batch`: `{"ops": [...]}` (the items of `lattice batch`, see `batch`)
//! written as one entry if every condition holds, else nothing.
//!
//! 200 `{"hash","hlc","ops"}`; 400 for a body that is not `{"ops": [...]}` or a bad item (named
//! `ops[i]`); 412 with the failed condition's `key` and current `etag`. Nothing is written on
//! any of them.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Access;
use crate::batch::batch_from_items;
use crate::json::write_receipt;
use crate::reply::{ApiError, Json};
use crate::server::Shared;

/// The largest batch body. An entry is at most `MAX_ENTRY_BYTES` (4 MiB) encoded; the same
/// bytes as JSON text are larger: base64 adds a third (5.3 MiB for 4 MiB of binary values), and
/// each op adds its field names and quotes (~40 bytes). 6 MiB takes a full entry of base64
/// values with room for those; a body past it could not become one entry anyway, except for
/// text heavy with JSON escapes, which can be sent base64 instead.
pub(crate) const MAX_BATCH_BODY_BYTES: usize = 6 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    ops: Vec<Value>,
}

/// The body is read only once the token is accepted, within the body-read timeout.
pub(crate) async fn post_batch(
    State(api): Shared,
    Path(store): Path<String>,
    request: Request,
) -> Result<Json, ApiError> {
    let store = api.authorise(request.headers(), &store, Access::Write).await?;
    let body = api.read_body(request).await?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let parsed: BatchBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{\"ops\": [...]}}: {e}")))?;
    let tx = batch_from_items(parsed.ops).map_err(bad)?;
    let ops = tx.ops.len();
    let receipt = api.node.transact(&store, tx).await?;
    let mut reply = write_receipt(&receipt);
    reply.insert("ops".into(), json!(ops));
    Ok(Json(Value::Object(reply)))
}
