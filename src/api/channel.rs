//! `/channel_self` (protocol.md §6): devices choosing their channel. `POST` sets, `PUT` gets,
//! `GET` lists (a bare array), `DELETE` unsets for plugins older than 7.34. Channel answers
//! never carry `kind` (setChannel would read it as success).
//!
//! Nothing here trusts the `device_id` of a request: plugins from 7.34 keep their choice on the
//! device, so the server stores a device's own choice only for an app that opts in with
//! `legacy_channel_self` (old plugins); everywhere else a request changes nothing stored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::api::body::SmallBody;
use crate::api::error::{ApiError, json_response};
use crate::api::state::AppState;
use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::protocol::{
    ChannelRefusal, RefusalCode, RequestError, UpdateRequest, clip_message, parse_json_body,
    parse_update_request,
};
use crate::domain::snapshot::AppSnapshot;

/// Plugins from this version on keep a chosen channel on the device (and send it as
/// `defaultChannel`); older ones need the server to remember it.
const LOCAL_CHANNEL_SINCE: semver::Version = semver::Version::new(7, 34, 0);

#[derive(Deserialize)]
struct ChannelField<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
}

fn json(value: serde_json::Value) -> Response {
    json_response(StatusCode::OK, value.to_string().into_bytes())
}

fn refusal(error: &str, message: &str) -> Response {
    json(serde_json::json!({ "error": error, "message": clip_message(message) }))
}

fn app_not_found() -> Response {
    refusal(
        RefusalCode::AppNotFound.as_str(),
        "This app has no releases on this server",
    )
}

/// An old plugin asking the server to remember its channel, for an app that did not opt in.
fn legacy_refused() -> Response {
    refusal(
        ChannelRefusal::NotStored.as_str(),
        "This server keeps no channel choices for plugins older than 7.34: update @capgo/capacitor-updater, or ask the operator for an override",
    )
}

/// True for plugins that need the server to remember `setChannel` (below 7.34).
fn keeps_channel_on_server(req: &UpdateRequest<'_>) -> bool {
    req.plugin_version
        .as_deref()
        .and_then(|v| semver::Version::parse(v).ok())
        .is_some_and(|v| v < LOCAL_CHANNEL_SINCE)
}

/// Whether a device may put itself on `channel`: the app's default, or a channel whose
/// release for its platform allows self-assignment.
fn may_self_assign(snap: &AppSnapshot, channel: &str, req: &UpdateRequest<'_>) -> Result<bool, ()> {
    if channel == snap.default_channel {
        return Ok(true);
    }
    match snap.release(channel, req.platform) {
        None => Err(()),
        Some(Ok(r)) => Ok(r.allow_self_assign),
        Some(Err(_)) => Ok(false),
    }
}

/// `POST /channel_self`: `setChannel`.
pub(super) async fn set_channel(
    State(state): State<Arc<AppState>>,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    let req = parse_update_request(&body)?;
    let ChannelField { channel } = parse_json_body(&body)?;
    let channel = channel
        .filter(|c| !c.is_empty())
        .ok_or_else(|| RequestError::InvalidJsonBody("channel is missing".into()))?;
    let Some(snap) = state.releases.get(&req.app_id).await? else {
        return Ok(app_not_found());
    };
    match may_self_assign(&snap, &channel, &req) {
        Err(()) => Ok(refusal(
            ChannelRefusal::NotFound.as_str(),
            &format!("Channel {channel:?} does not exist for this platform"),
        )),
        Ok(false) => Ok(refusal(
            ChannelRefusal::NotAllowed.as_str(),
            "This channel does not allow devices to self associate",
        )),
        Ok(true) => {
            let is_default = channel == snap.default_channel;
            if keeps_channel_on_server(&req) && !is_default {
                if !snap.legacy_channel_self {
                    tracing::info!(app_id = %req.app_id, device_id = %req.device_id, channel = %channel, "server-side channel choice refused");
                    return Ok(legacy_refused());
                }
                state
                    .devices
                    .set_channel(&req.app_id, &req.device_id, &channel, ChannelSource::Device)
                    .await?;
            } else if keeps_channel_on_server(&req) && snap.legacy_channel_self {
                state
                    .devices
                    .unset_channel(&req.app_id, &req.device_id, Some(ChannelSource::Device))
                    .await?;
            }
            tracing::info!(app_id = %req.app_id, device_id = %req.device_id, channel = %channel, "channel self-assigned");
            // The default is not a choice to remember: `unset` makes the plugin clear its local
            // channel (protocol.md §6), so it follows a later change of the app's default.
            Ok(json(if is_default {
                serde_json::json!({ "status": "ok", "unset": true, "allowSet": true })
            } else {
                serde_json::json!({ "status": "ok", "allowSet": true })
            }))
        }
    }
}

/// `PUT /channel_self`: `getChannel`. The plugin stores whatever channel it is told (protocol.md
/// §9 trap 11), so a device that simply follows the app's default is told `""`: naming the
/// default would pin the device to it, and it would not follow a later change of default.
pub(super) async fn get_channel(
    State(state): State<Arc<AppState>>,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    let req = parse_update_request(&body)?;
    let (snap, device) = tokio::join!(
        state.releases.get(&req.app_id),
        state.devices.get_device(&req.app_id, &req.device_id)
    );
    let (snap, device) = (snap?, device?);
    let Some(snap) = snap else {
        return Ok(app_not_found());
    };
    let allow_set = snap
        .channels
        .keys()
        .any(|c| may_self_assign(&snap, c, &req) == Ok(true) && *c != snap.default_channel);
    let overridden = device
        .as_ref()
        .filter(|d: &&DeviceState| snap.honours_override(d))
        .and_then(|d| d.channel.clone());
    let (channel, status) = match (overridden, req.default_channel.as_deref()) {
        (Some(c), _) => (c, "override"),
        (None, Some(asked))
            if asked != snap.default_channel && may_self_assign(&snap, asked, &req) == Ok(true) =>
        {
            (asked.to_owned(), "override")
        }
        _ => (String::new(), "default"),
    };
    Ok(json(
        serde_json::json!({ "channel": channel, "status": status, "allowSet": allow_set }),
    ))
}

/// `GET /channel_self?<InfoObject>`: `listChannels`, a bare array of the channels this device
/// may be on, with integer ids.
pub(super) async fn list_channels(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: BTreeMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|_| RequestError::InvalidJsonBody("the query string is not valid".into()))?;
    // The plugin sends the InfoObject as query parameters, booleans as `true`/`false`.
    let object: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .map(|(k, v)| {
            let value = match (k.as_str(), v.as_str()) {
                ("is_emulator" | "is_prod", "true") => serde_json::Value::Bool(true),
                ("is_emulator" | "is_prod", "false") => serde_json::Value::Bool(false),
                _ => serde_json::Value::String(v),
            };
            (k, value)
        })
        .collect();
    let body = serde_json::to_vec(&object).map_err(|_| ApiError::Internal)?;
    let req = parse_update_request(&body)?;
    let Some(snap) = state.releases.get(&req.app_id).await? else {
        return Ok(json(serde_json::json!([])));
    };
    let mut names: Vec<&String> = snap.channels.keys().collect();
    names.sort();
    let mut list = Vec::new();
    for name in names {
        let Some(Ok(r)) = snap.release(name, req.platform) else {
            continue;
        };
        let is_default = *name == snap.default_channel;
        let audience = (if req.is_prod {
            r.allow_prod
        } else {
            r.allow_dev
        }) && (if req.is_emulator {
            r.allow_emulator
        } else {
            r.allow_device
        });
        if audience && (is_default || r.allow_self_assign) {
            list.push(serde_json::json!({
                "id": channel_id(name),
                "name": name,
                "public": is_default,
                "allow_self_set": r.allow_self_assign,
            }));
        }
    }
    Ok(json(serde_json::Value::Array(list)))
}

/// `DELETE /channel_self`: `unsetChannel` of plugins before 7.34; forgets what the device chose
/// (never an operator's assignment), for an app with `legacy_channel_self`. Elsewhere nothing
/// a device chose is stored, so there is nothing to forget.
pub(super) async fn unset_channel(
    State(state): State<Arc<AppState>>,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    let req = parse_update_request(&body)?;
    let snap = state.releases.get(&req.app_id).await?;
    if snap.is_some_and(|s| s.legacy_channel_self) {
        state
            .devices
            .unset_channel(&req.app_id, &req.device_id, Some(ChannelSource::Device))
            .await?;
    }
    Ok(json(serde_json::json!({ "status": "ok" })))
}

/// A stable integer id for a channel name (the plugin wants integers; names are the identity).
fn channel_id(name: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash & 0x7fff_ffff
}
