#!/usr/bin/env python3
"""Minimal matrix-nio echo bot, used to check Switchboard's Matrix client-server API.

It uses only matrix-nio's public API (AsyncClient, login, whoami, join,
room_messages, sync, add_event_callback, room_send, logout). It was written
against matrix-nio 0.26.0, installed plainly (`pip install matrix-nio`, without
the `[e2e]` extra, so no encryption store and no key upload).

Usage:
    matrix_echo_bot.py HOMESERVER USER PASSWORD ROOM_ID [STOP_WORD]

Each argument can also come from the environment; an argument given on the
command line wins:
    MATRIX_HOMESERVER   e.g. http://127.0.0.1:8008   (a trailing '/' is removed)
    MATRIX_USER         localpart ("echobot") or full id ("@echobot:switchboard")
    MATRIX_PASSWORD
    MATRIX_ROOM_ID      room id or alias passed to POST /join/{roomIdOrAlias}
    MATRIX_STOP_WORD    default "!stop"
Optional settings:
    MATRIX_SYNC_TIMEOUT_MS  long-poll timeout for each sync, default 30000
    MATRIX_HISTORY_LIMIT    `limit` for GET /rooms/{id}/messages, default 50
    MATRIX_HISTORY_PAGES    how many /messages pages to read at start, default 3 (0 = skip)
    MATRIX_MAX_SECONDS      stop with exit code 5 after this many seconds, default 120
    MATRIX_DEVICE_NAME      initial_device_display_name, default "switchboard-echo-bot"
    MATRIX_LOG_LEVEL        Python logging level for stderr, default WARNING

Output: one JSON object per line on stdout (flushed after each line), so that
a Rust test can read what the bot saw. Every line has a "kind":
    {"kind":"login", "user_id", "device_id"}
    {"kind":"whoami", "user_id", "device_id"}
    {"kind":"joined", "room_id"}
    {"kind":"event", "phase", "room_id", "type", "sender", "event_id",
        "origin_server_ts", "own", ...}
        phase is "history" (from GET /messages at start), "backlog" (the first
        sync) or "live" (later syncs). own is true when the bot sent it.
        m.room.message adds "msgtype", "body"; an edit adds "relates_to"
        (the whole m.relates_to object) and "new_content" (m.new_content);
        any other m.relates_to is passed through as "relates_to" too;
        m.room.redaction adds "redacts" (and "reason" if given); an event that
        reached us already redacted has "redacted": true and "redacted_by".
        Events nio could not parse are reported as {"kind":"bad_event",
        "phase", "room_id", "reason", "source"}.
    {"kind":"ready", "next_batch"}  after the first sync: messages posted after
        this line are answered. A test should wait for it before posting.
    {"kind":"sent", "in_reply_to", "event_id", "body"}   after each echo
    {"kind":"stop", "event_id"}      the stop word was seen
    {"kind":"logout", "ok"}
    {"kind":"error", "step", "error"} before a non-zero exit

Exit codes: 0 stop word seen and logout succeeded; 2 login failed; 3 join
failed; 4 sync kept failing; 5 MATRIX_MAX_SECONDS exceeded; 6 sending an echo
failed; 7 logout failed; 1 anything else (exception, bad arguments).

Behaviour:
  * replies "echo: <body>" (m.text) to every m.text message from another user
    that arrives in a *live* sync, i.e. after the "ready" line;
  * never replies to its own messages (that would loop), to edits (content
    with m.relates_to.rel_type == "m.replace"; they are reported, not echoed),
    to m.notice/m.emote, or to the stop word;
  * on a live m.text whose body (stripped) equals the stop word, from another
    user: prints "stop", logs out, exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    BadEvent,
    Event,
    JoinResponse,
    LoginResponse,
    LogoutResponse,
    MatrixRoom,
    MessageDirection,
    RedactedEvent,
    RedactionEvent,
    RoomMessage,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UnknownBadEvent,
    WhoamiResponse,
)

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_LOGIN = 2
EXIT_JOIN = 3
EXIT_SYNC = 4
EXIT_TIMEOUT = 5
EXIT_SEND = 6
EXIT_LOGOUT = 7

MAX_CONSECUTIVE_SYNC_ERRORS = 5

log = logging.getLogger("echo-bot")


def emit(kind: str, **fields: Any) -> None:
    """Print one machine-readable JSON line to stdout."""
    line = {"kind": kind}
    line.update(fields)
    sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


class BotExit(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _setting(argv: list[str], index: int, env: str, default: str | None = None) -> str:
    if len(argv) > index and argv[index] != "":
        return argv[index]
    value = os.environ.get(env, default)
    if value is None or value == "":
        raise SystemExit(
            f"missing argument #{index} or ${env}\n"
            "usage: matrix_echo_bot.py HOMESERVER USER PASSWORD ROOM_ID [STOP_WORD]"
        )
    return value


class EchoBot:
    def __init__(
        self,
        homeserver: str,
        user: str,
        password: str,
        room: str,
        stop_word: str,
        sync_timeout_ms: int,
        history_limit: int,
        history_pages: int,
        device_name: str,
    ) -> None:
        self.password = password
        self.room = room
        self.room_id = room  # replaced by the id in the join response
        self.stop_word = stop_word
        self.sync_timeout_ms = sync_timeout_ms
        self.history_limit = history_limit
        self.history_pages = history_pages
        self.device_name = device_name

        # Bounded retries: by default nio retries 429s and connection
        # errors/timeouts forever, which would hang a test if the server dies.
        config = AsyncClientConfig(
            max_limit_exceeded=10,
            max_timeouts=3,
            # Used only for requests other than sync (sync sets its own
            # timeout: sync_timeout_ms/1000 + 15 seconds).
            request_timeout=30,
        )
        # No store_path and no e2e extra installed: nio creates no store and
        # no Olm machine, so it never calls /keys/upload, /keys/query etc.
        self.client = AsyncClient(homeserver, user, config=config)

        # "history" / "backlog" / "live": which request produced the events the
        # callbacks are about to see. Callbacks run inside client.sync(), so
        # the flag is set before each call.
        self.phase = "backlog"
        self.pending_echoes: list[tuple[str, str, str]] = []  # (room_id, event_id, body)
        self.stop_event_id: str | None = None

        # One callback that reports everything, and one for RoomMessageText
        # that decides what to answer. ClientCallback filters with isinstance,
        # so BadEvent/UnknownBadEvent (which are not Event subclasses) need to
        # be listed explicitly.
        self.client.add_event_callback(self.on_any_event, (Event, BadEvent, UnknownBadEvent))
        self.client.add_event_callback(self.on_text, RoomMessageText)

    # ----------------------------------------------------------------- output

    def describe(self, room_id: str, event: Any, phase: str) -> None:
        if isinstance(event, (BadEvent, UnknownBadEvent)):
            emit(
                "bad_event",
                phase=phase,
                room_id=room_id,
                reason=type(event).__name__,
                source=event.source,
            )
            return

        source = event.source
        line: dict[str, Any] = {
            "phase": phase,
            "room_id": room_id,
            "type": source.get("type"),
            "sender": event.sender,
            "event_id": event.event_id,
            "origin_server_ts": event.server_timestamp,
            "own": event.sender == self.client.user_id,
        }
        content = source.get("content") or {}
        if isinstance(event, RedactedEvent):
            line["redacted"] = True
            line["redacted_by"] = event.redacter
            if event.reason is not None:
                line["reason"] = event.reason
        elif isinstance(event, RedactionEvent):
            line["redacts"] = event.redacts
            if event.reason is not None:
                line["reason"] = event.reason
        elif isinstance(event, RoomMessage):
            line["msgtype"] = content.get("msgtype")
            line["body"] = content.get("body")
            relates_to = content.get("m.relates_to")
            if relates_to is not None:
                line["relates_to"] = relates_to
            if "m.new_content" in content:
                line["new_content"] = content["m.new_content"]
        emit("event", **line)

    # -------------------------------------------------------------- callbacks

    async def on_any_event(self, room: MatrixRoom, event: Any) -> None:
        self.describe(room.room_id, event, self.phase)

    async def on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if self.phase != "live":
            return  # backlog from the first sync: report only, never answer
        if event.sender == self.client.user_id:
            return  # our own echo coming back through sync
        if room.room_id != self.room_id:
            return
        relates_to = event.source.get("content", {}).get("m.relates_to") or {}
        if relates_to.get("rel_type") == "m.replace":
            return  # an edit of an earlier message: reported, not echoed
        if event.body.strip() == self.stop_word:
            if self.stop_event_id is None:
                self.stop_event_id = event.event_id
            return
        # Answer after sync() has returned rather than from inside the
        # callback, so replies go out in order and outside response handling.
        self.pending_echoes.append((room.room_id, event.event_id, event.body))

    # ------------------------------------------------------------------ steps

    async def login(self) -> None:
        resp = await self.client.login(self.password, device_name=self.device_name)
        if not isinstance(resp, LoginResponse):
            emit("error", step="login", error=str(resp))
            raise BotExit(EXIT_LOGIN)
        emit("login", user_id=resp.user_id, device_id=resp.device_id)

        who = await self.client.whoami()
        if not isinstance(who, WhoamiResponse):
            emit("error", step="whoami", error=str(who))
            raise BotExit(EXIT_LOGIN)
        emit("whoami", user_id=who.user_id, device_id=who.device_id)

    async def join(self) -> None:
        resp = await self.client.join(self.room)
        if not isinstance(resp, JoinResponse):
            emit("error", step="join", error=str(resp))
            raise BotExit(EXIT_JOIN)
        self.room_id = resp.room_id
        emit("joined", room_id=resp.room_id)

    async def read_history(self, start: str | None) -> None:
        """Page backwards through GET /rooms/{id}/messages and report it.

        nio sends no `from` at all when `start` is empty; with a token it sends
        `from=<token>`. Each page's `end` is the `from` of the next one.
        """
        token = start
        for _ in range(self.history_pages):
            resp = await self.client.room_messages(
                self.room_id,
                start=token,
                direction=MessageDirection.back,
                limit=self.history_limit,
            )
            if not isinstance(resp, RoomMessagesResponse):
                emit("error", step="messages", error=str(resp))
                return  # history is informational; keep going
            for event in resp.chunk:
                self.describe(self.room_id, event, "history")
            if not resp.chunk or not resp.end or resp.end == token:
                return
            token = resp.end

    async def sync_once(self, timeout_ms: int, full_state: bool | None) -> SyncResponse:
        errors = 0
        while True:
            resp = await self.client.sync(
                timeout=timeout_ms,
                since=self.client.next_batch or None,
                full_state=full_state,
            )
            if isinstance(resp, SyncResponse):
                return resp
            errors += 1
            emit("error", step="sync", error=str(resp))
            if getattr(resp, "status_code", None) == "M_UNKNOWN_TOKEN" or (
                errors >= MAX_CONSECUTIVE_SYNC_ERRORS
            ):
                raise BotExit(EXIT_SYNC)
            await asyncio.sleep(0.5)

    async def send_pending(self) -> None:
        while self.pending_echoes:
            room_id, event_id, body = self.pending_echoes.pop(0)
            reply = f"echo: {body}"
            resp = await self.client.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": reply},
            )
            if not isinstance(resp, RoomSendResponse):
                emit("error", step="send", error=str(resp))
                raise BotExit(EXIT_SEND)
            emit("sent", in_reply_to=event_id, event_id=resp.event_id, body=reply)

    async def logout(self) -> bool:
        resp = await self.client.logout()
        ok = isinstance(resp, LogoutResponse)
        emit("logout", ok=ok, **({} if ok else {"error": str(resp)}))
        return ok

    async def run(self) -> int:
        await self.login()
        await self.join()

        # Why an explicit loop instead of sync_forever():
        #  * The first sync (no `since`, timeout 0 -> nio sends no `timeout`
        #    parameter at all) returns whatever backlog the server puts in the
        #    timeline. Those events are reported with phase "backlog" but never
        #    answered, so the bot only answers messages posted after it
        #    printed "ready". With sync_forever() the callbacks cannot tell the
        #    first sync from later ones without extra bookkeeping.
        #  * Errors are visible: sync() returns SyncError for HTTP errors and
        #    bad JSON, and we count them instead of looping forever.
        #  * Replies are sent between syncs, and the stop word ends the loop
        #    cleanly, followed by logout.
        # Every later sync passes since=<previous next_batch> and
        # timeout=sync_timeout_ms (nio then waits sync_timeout_ms/1000 + 15 s
        # on its side before giving up and retrying).
        self.phase = "backlog"
        await self.sync_once(timeout_ms=0, full_state=True)

        if self.history_pages > 0:
            # Read the room from its newest event backwards (no `from`), so
            # the output shows the recent history whatever the first sync's
            # timeline held. A client that only wants what the first sync left
            # out would pass rooms.join[id].timeline.prev_batch instead.
            self.phase = "history"
            await self.read_history(None)

        emit("ready", next_batch=self.client.next_batch)

        self.phase = "live"
        while self.stop_event_id is None:
            await self.sync_once(timeout_ms=self.sync_timeout_ms, full_state=None)
            await self.send_pending()

        emit("stop", event_id=self.stop_event_id)
        return EXIT_OK if await self.logout() else EXIT_LOGOUT


async def amain(argv: list[str]) -> int:
    homeserver = _setting(argv, 1, "MATRIX_HOMESERVER").rstrip("/")
    user = _setting(argv, 2, "MATRIX_USER")
    password = _setting(argv, 3, "MATRIX_PASSWORD")
    room = _setting(argv, 4, "MATRIX_ROOM_ID")
    stop_word = _setting(argv, 5, "MATRIX_STOP_WORD", "!stop")
    sync_timeout_ms = int(os.environ.get("MATRIX_SYNC_TIMEOUT_MS", "30000"))
    history_limit = int(os.environ.get("MATRIX_HISTORY_LIMIT", "50"))
    history_pages = int(os.environ.get("MATRIX_HISTORY_PAGES", "3"))
    max_seconds = float(os.environ.get("MATRIX_MAX_SECONDS", "120"))
    device_name = os.environ.get("MATRIX_DEVICE_NAME", "switchboard-echo-bot")

    bot = EchoBot(
        homeserver,
        user,
        password,
        room,
        stop_word,
        sync_timeout_ms,
        history_limit,
        history_pages,
        device_name,
    )
    started = time.monotonic()
    try:
        return await asyncio.wait_for(bot.run(), timeout=max_seconds)
    except BotExit as e:
        return e.code
    except asyncio.TimeoutError:
        emit("error", step="run", error=f"no stop word within {max_seconds}s")
        if bot.client.logged_in:
            try:
                await asyncio.wait_for(bot.logout(), timeout=5)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        return EXIT_TIMEOUT
    except Exception as e:  # noqa: BLE001
        emit(
            "error",
            step="run",
            error=f"{type(e).__name__}: {e}",
            after_seconds=round(time.monotonic() - started, 3),
        )
        return EXIT_OTHER
    finally:
        await bot.client.close()


def main() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("MATRIX_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(asyncio.run(amain(sys.argv)))


if __name__ == "__main__":
    main()
