//! The model's tools: `read_room`, `search` and `post`, run as the invoking user under the
//! operator's policy per tool (allow, ask the person in chat, deny). A call with bad
//! arguments, or for a tool that does not exist, is answered with an error for the model,
//! not run; what the person is asked to approve is masked like any reply.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::context::format_time;
use super::{Call, ContextSource, Llm, LlmError, Rules, cut, super_lock};
use crate::store::{RoomId, User, UserId};

/// The longest tool result handed back to the model.
pub(super) const MAX_TOOL_RESULT_BYTES: usize = 16 * 1024;
/// Most messages the `read_room` tool returns.
const MAX_TOOL_READ: u64 = 50;
/// Most results of the `search` tool.
const MAX_TOOL_SEARCH: u32 = 10;

/// How a tool is governed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolPolicy {
    Allow,
    Ask,
    Deny,
}

const TOOLS: [&str; 3] = ["read_room", "search", "post"];

/// A tool call waiting for its person's decision.
pub(super) struct Pending {
    pub(super) user: UserId,
    pub(super) decision: tokio::sync::oneshot::Sender<bool>,
}

#[derive(Debug)]
enum ToolError {
    Invalid(String),
    Denied(String),
}

impl Llm {
    /// A room named by the model (`"#general"`, `"general"` or an id) among `user`'s rooms.
    async fn room_named(&self, user: &User, named: &Value) -> Result<Option<RoomId>, LlmError> {
        let wanted = match named {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().trim_start_matches('#').to_string(),
            _ => return Ok(None),
        };
        let rooms = self.store.rooms_for_user(user.id).await?;
        Ok(rooms
            .iter()
            .find(|r| {
                r.room.id.to_string() == wanted || r.room.name.as_deref() == Some(wanted.as_str())
            })
            .map(|r| r.room.id))
    }

    fn tool_policy(rules: &Rules, name: &str) -> ToolPolicy {
        rules
            .gov
            .tools
            .get(name)
            .and_then(|p| parse_policy(p))
            // A tool the operator did not mention: ask.
            .unwrap_or(ToolPolicy::Ask)
    }

    /// Run one tool call: `(decision, result for the model)`.
    pub(super) async fn run_tool(
        &self,
        rules: &Rules,
        call: &Call,
        name: &str,
        arguments: &str,
    ) -> (&'static str, String) {
        if !TOOLS.contains(&name) {
            return ("invalid", format!("error: there is no tool {name:?}"));
        }
        let args: Value = match serde_json::from_str(arguments) {
            Ok(args @ Value::Object(_)) => args,
            _ => {
                return (
                    "invalid",
                    "error: the arguments are not a JSON object".into(),
                );
            }
        };
        let mut decision = "allowed";
        match Self::tool_policy(rules, name) {
            ToolPolicy::Deny => {
                return (
                    "denied",
                    format!("error: the operator does not allow {name}"),
                );
            }
            ToolPolicy::Allow => {}
            ToolPolicy::Ask => {
                if !call.interactive {
                    return (
                        "refused",
                        format!(
                            "error: {name} needs the person's approval, which cannot be asked here"
                        ),
                    );
                }
                // What the person reads is masked like any reply.
                let (what, _) = rules.egress.mask_reply(&describe_tool(name, &args));
                match self.ask(&call.user, call.room, &what).await {
                    Some(true) => decision = "approved",
                    Some(false) => {
                        return (
                            "denied",
                            format!("error: {} did not approve {name}", call.user.name),
                        );
                    }
                    None => return ("expired", format!("error: nobody approved {name} in time")),
                }
            }
        }
        match self.tool(rules, call, name, &args).await {
            Ok(result) => (decision, result),
            Err(ToolError::Invalid(why)) => ("invalid", format!("error: {why}")),
            Err(ToolError::Denied(why)) => ("denied", format!("error: {why}")),
        }
    }

    async fn tool(
        &self,
        rules: &Rules,
        call: &Call,
        name: &str,
        args: &Value,
    ) -> Result<String, ToolError> {
        let user = &call.user;
        match name {
            "read_room" => {
                let room = self.tool_room(user, args).await?;
                let limit = args
                    .get("limit")
                    .and_then(Value::as_u64)
                    .unwrap_or(20)
                    .clamp(1, MAX_TOOL_READ);
                let source = Call {
                    context: vec![ContextSource {
                        room,
                        thread_root: None,
                        limit: limit as u32,
                        since: None,
                    }],
                    ..call.clone()
                };
                self.context(&source)
                    .await
                    .map_err(|e| ToolError::Denied(e.to_string()))
            }
            "search" => {
                let q = args
                    .get("query")
                    .and_then(Value::as_str)
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| ToolError::Invalid("search needs a \"query\" string".into()))?;
                let request = crate::search::SearchRequest {
                    q: q.to_string(),
                    limit: Some(MAX_TOOL_SEARCH),
                    ..Default::default()
                };
                let page = crate::search::search(
                    &*self.store,
                    &self.limits,
                    crate::search::Searcher::Member(user),
                    request,
                )
                .await
                .map_err(|e| ToolError::Invalid(e.to_string()))?;
                if page.results.is_empty() {
                    return Ok("no messages found".into());
                }
                Ok(page
                    .results
                    .iter()
                    .map(|hit| {
                        format!(
                            "[{}] in {}: {}",
                            format_time(hit.message.created_at),
                            hit.room
                                .name
                                .clone()
                                .unwrap_or_else(|| format!("room {}", hit.room.id)),
                            hit.message.body.clone().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
            "post" => {
                let room = self.tool_room(user, args).await?;
                let text = args
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| ToolError::Invalid("post needs a \"text\" string".into()))?;
                // What the model writes is masked like any reply before it is posted.
                let (text, _) = rules.egress.mask_reply(text);
                let actions = self
                    .actions
                    .get()
                    .ok_or_else(|| ToolError::Denied("posting is not available".into()))?;
                let id = actions
                    .post_as(user, room, text)
                    .await
                    .map_err(ToolError::Denied)?;
                Ok(format!("posted as message {id}"))
            }
            other => Err(ToolError::Invalid(format!("there is no tool {other:?}"))),
        }
    }

    async fn tool_room(&self, user: &User, args: &Value) -> Result<RoomId, ToolError> {
        let named = args
            .get("room")
            .ok_or_else(|| ToolError::Invalid("name the \"room\"".into()))?;
        match self.room_named(user, named).await {
            Ok(Some(room)) => Ok(room),
            Ok(None) => Err(ToolError::Denied(format!(
                "{} is not a member of a room called {named}",
                user.name
            ))),
            Err(e) => Err(ToolError::Denied(e.to_string())),
        }
    }

    /// Ask `user` to approve `what`; `None` when nobody decided in time.
    async fn ask(&self, user: &User, room: Option<RoomId>, what: &str) -> Option<bool> {
        let Some(actions) = self.actions.get() else {
            return Some(false);
        };
        let code = crate::ids::random_token(6)
            .to_ascii_lowercase()
            .replace(['-', '_'], "x");
        let (tx, rx) = tokio::sync::oneshot::channel();
        super_lock(&self.approvals).insert(
            code.clone(),
            Pending {
                user: user.id,
                decision: tx,
            },
        );
        actions.notify(
            user.id,
            room,
            &format!("The assistant wants to {what}. Reply /approve {code} or /deny {code}."),
        );
        let wait = Duration::from_secs(self.config.approval_timeout_secs.max(1));
        let decided = tokio::time::timeout(wait, rx).await;
        super_lock(&self.approvals).remove(&code);
        match decided {
            Ok(Ok(approved)) => Some(approved),
            _ => None,
        }
    }

    /// `user`'s decision on the tool call waiting under `code`.
    pub fn decide(&self, user: UserId, code: &str, approve: bool) -> Result<(), LlmError> {
        let mut approvals = super_lock(&self.approvals);
        match approvals.get(code.trim()) {
            Some(pending) if pending.user == user => {}
            _ => {
                return Err(LlmError::InvalidRequest(
                    "no tool call of yours waits under that code (it may have expired)".into(),
                ));
            }
        }
        let Some(pending) = approvals.remove(code.trim()) else {
            return Err(LlmError::InvalidRequest("that approval is gone".into()));
        };
        let _ = pending.decision.send(approve);
        Ok(())
    }
}

/// Every tool named is ours, with a policy we know.
pub(super) fn check_tools(tools: &BTreeMap<String, String>) -> Result<(), String> {
    for (tool, policy) in tools {
        if !TOOLS.contains(&tool.as_str()) {
            return Err(format!(
                "llm.tools.{tool}: no such tool (read_room, search, post)"
            ));
        }
        parse_policy(policy).ok_or_else(|| {
            format!("llm.tools.{tool}: expected allow, ask or deny, got {policy:?}")
        })?;
    }
    Ok(())
}

fn parse_policy(policy: &str) -> Option<ToolPolicy> {
    match policy.trim() {
        "allow" => Some(ToolPolicy::Allow),
        "ask" => Some(ToolPolicy::Ask),
        "deny" => Some(ToolPolicy::Deny),
        _ => None,
    }
}

/// A tool's name for labels: one of ours, or `unknown` (a model's invention must not make
/// new metric series).
pub(super) fn tool_label(name: &str) -> &'static str {
    TOOLS
        .iter()
        .find(|t| **t == name)
        .copied()
        .unwrap_or("unknown")
}

/// What a tool call would do, in words, for the person asked to approve it.
fn describe_tool(name: &str, args: &Value) -> String {
    let room = args.get("room").map(|r| r.to_string()).unwrap_or_default();
    match name {
        "post" => {
            let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
            format!("post in room {room} as you: \"{}\"", cut(text, 300))
        }
        "read_room" => format!("read room {room}"),
        "search" => format!(
            "search your rooms for {}",
            args.get("query").map(|q| q.to_string()).unwrap_or_default()
        ),
        other => format!("use {other}"),
    }
}

/// The host's tools, as OpenAI's `tools` parameter describes them.
pub(super) fn tool_definitions() -> Value {
    json!([
        {
            "type": "function",
            "function": {
                "name": "read_room",
                "description": "Read the latest messages of a chat room the user is a member of.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "room": { "type": "string", "description": "The room's name or id" },
                        "limit": { "type": "integer", "minimum": 1, "maximum": MAX_TOOL_READ }
                    },
                    "required": ["room"]
                }
            }
        },
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search the messages of the rooms the user is a member of.",
                "parameters": {
                    "type": "object",
                    "properties": { "query": { "type": "string" } },
                    "required": ["query"]
                }
            }
        },
        {
            "type": "function",
            "function": {
                "name": "post",
                "description": "Post a message as the user in a room they are a member of.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "room": { "type": "string" },
                        "text": { "type": "string" }
                    },
                    "required": ["room", "text"]
                }
            }
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::tool_label;

    #[test]
    fn unknown_tools_do_not_make_metric_series() {
        assert_eq!(tool_label("post"), "post");
        assert_eq!(tool_label("rm -rf"), "unknown");
    }
}
