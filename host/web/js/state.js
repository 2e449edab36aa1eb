// The chat client's model: users, rooms, and each room's timeline, fed by history pages and
// live events. Views read it; only this module decides how an event changes it.
//
// Dedup rule: a room's `cursor` is the highest `seq` applied from the live stream (or the
// latest history page, which reflects every event up to its last `seq`). Live events at or
// below it are already applied and are dropped; the cursor is what `sync` sends on reconnect.
// Timeline items are keyed by event id, so applying the same message twice is harmless too.
//
// Threads: a reply is an ordinary message of the room's log with `thread_root`, so it is kept
// in the room's items like any event (the cursor, sync and dedup need nothing new), but the
// room's timeline leaves it out unless its sender also sent it to the room (`inRoomTimeline`).
// A root's `thread.replies` comes from history and is counted on from live events here.
//
// Mentions: an event says whom it mentions (`mentions`, `mentions_room`); a room's
// `mentions` (messages after the read cursor that mention us) comes from `GET /rooms` and is
// counted on here from live events, like `unread`. A room's `members` (a Set of user ids,
// for the `@` autocomplete) is loaded by the controller when the room is opened.
//
// Only messages and membership changes are timeline items (`TIMELINE_KINDS`). Every other
// kind is about a message (`target`) and only changes it: edits and deletes, reactions
// (`reaction`, `reaction_removed`: a message's `reactions`, `[{ emoji, count, me }]`, comes
// from history and is counted on here from live events) and pins (`pinned`, `unpinned`).
// None of them is shown, counted as unread or notified. A room's pins are kept beside its
// items, in `pins` (message id -> `{ pinned_by, pinned_at }`, what the markers show) and
// `pinList` (`GET /pins` as it came, what the pins panel lists), loaded by the controller
// when the room is opened and again after each pin event: a pin is about a message that
// may not be loaded, so the list cannot be worked out from events alone.
//
// Presence: who is online, away or offline is kept in `presence` (a `PresenceBook`,
// presence.js), which the presence controller loads and updates from `presence` frames; it
// is not about rooms or events, so nothing here changes it.

import { editedMentions, mentionsMe } from './mentions.js';
import { PresenceBook } from './presence.js';

/** The event kinds shown in a timeline; every other kind only changes the message it targets. */
const TIMELINE_KINDS = new Set(['message', 'member_joined', 'member_left']);

export class ChatState {
  constructor(me) {
    this.me = me;
    this.users = new Map();
    this.rooms = new Map();
    /** Event ids a plugin modified (known from our own acks). */
    this.modified = new Set();
    /** Who is online, away or offline (presence.js). */
    this.presence = new PresenceBook(me.id);
  }

  setUsers(list) {
    for (const user of list) this.users.set(user.id, user);
  }

  /** How a user is shown: the display name, followed by the unique user name whenever the
   * two differ. Display names are free text (look-alike letters included), so "bоb"
   * shows as "bоb (@mallory)" and cannot pass for bob. */
  userName(id) {
    const user = id === this.me.id ? this.me : this.users.get(id);
    if (!user) return `user #${id}`;
    const display = user.display_name || user.name;
    return display === user.name ? display : `${display} (@${user.name})`;
  }

  roomTitle(room) {
    if (room.kind === 'direct') return room.peer ? this.userName(room.peer) : 'Direct chat';
    return room.name || `Room #${room.id}`;
  }

  /** Merge `GET /rooms` into the model; returns rooms that are gone (we left or were removed). */
  setRooms(summaries) {
    const seen = new Set();
    for (const summary of summaries) {
      seen.add(summary.id);
      const room = this.rooms.get(summary.id);
      if (!room) {
        this.rooms.set(summary.id, {
          ...summary,
          cursor: summary.last_seq,
          items: new Map(),
          loaded: false,
          loading: false,
          hasMore: true,
          oldest: null,
          typing: new Map(),
          sentRead: summary.read_seq,
        });
        continue;
      }
      Object.assign(room, {
        name: summary.name,
        topic: summary.topic,
        role: summary.role,
        peer: summary.peer,
        members_may_pin: Boolean(summary.members_may_pin),
        read_seq: Math.max(room.read_seq, summary.read_seq),
        unread: summary.unread,
        mentions: summary.mentions ?? 0,
        last_seq: Math.max(room.last_seq, summary.last_seq),
      });
      // An unloaded room has nothing to replay into; a loaded one only advances by events.
      if (!room.loaded) room.cursor = Math.max(room.cursor, summary.last_seq);
    }
    const gone = [...this.rooms.keys()].filter((id) => !seen.has(id));
    for (const id of gone) this.rooms.delete(id);
    return gone;
  }

  /** `{ "room id": last applied seq }`, what `sync` sends. */
  cursors() {
    const out = {};
    for (const room of this.rooms.values()) out[room.id] = room.cursor;
    return out;
  }

  /** The latest page of a room: replaces what was loaded. */
  loadLatest(room, page) {
    room.items = new Map([...room.items].filter(([, item]) => item.local));
    for (const event of page.events) this.absorb(room, event);
    room.hasMore = page.has_more;
    room.oldest = page.events.length ? page.events[0].seq : null;
    const newest = page.events.length ? page.events[page.events.length - 1].seq : 0;
    room.cursor = Math.max(room.cursor, newest);
    room.last_seq = Math.max(room.last_seq, newest);
    room.loaded = true;
  }

  /** An older page (infinite scroll): adds messages, never moves the cursor. */
  loadOlder(room, page) {
    for (const event of page.events) this.absorb(room, event);
    room.hasMore = page.has_more;
    if (page.events.length) room.oldest = page.events[0].seq;
  }

  /**
   * Apply one live event (from the socket, including `sync` replay). Returns
   * `{ room, fresh }` where `fresh` is false for an already-applied event, or null for a
   * room we do not know yet (the caller refreshes the room list).
   */
  applyLive(event) {
    const room = this.rooms.get(event.room_id);
    if (!room) return null;
    if (event.seq <= room.cursor) return { room, fresh: false };
    room.cursor = event.seq;
    room.last_seq = Math.max(room.last_seq, event.seq);
    // A reply only in its thread is not news in the room's timeline.
    if (event.kind === 'message' && event.sender_id !== this.me.id && !room.visible && inRoomTimeline(event)) {
      room.unread += 1;
    }
    // The server counts thread replies that mention us too.
    if (event.kind === 'message' && event.sender_id !== this.me.id && !room.visible && mentionsMe(event, this.me.id)) {
      room.mentions = (room.mentions || 0) + 1;
    }
    if (event.kind === 'message' && event.sender_id === this.me.id) {
      room.read_seq = Math.max(room.read_seq, event.seq);
    }
    if (room.loaded) {
      if (event.kind === 'edit') {
        this.patchTarget(room, event.target, {
          body: event.body, edited_at: event.created_at, metadata: event.metadata,
          ...editedMentions(this, room, room.items.get(`e${event.target}`), event.body),
        });
      } else if (event.kind === 'delete') this.deleted(room, event.target);
      else if (event.kind === 'reaction' || event.kind === 'reaction_removed') this.reacted(room, event);
      else if (event.kind === 'pinned' || event.kind === 'unpinned') this.pinChanged(room, event);
      else {
        this.absorb(room, event);
        // Each live event passes here once (the cursor), so each reply is counted once; a
        // history page's count is the server's and already includes what it returned.
        if (event.kind === 'message' && event.thread_root) {
          this.countReply(room, event.thread_root, 1, event.created_at);
        }
      }
    }
    return { room, fresh: true };
  }

  /** A message was deleted: a deleted reply no longer counts in its root's replies (the
   * server counts live replies only). */
  deleted(room, target) {
    const item = room.items.get(`e${target}`);
    if (item?.thread_root && !item.deleted) this.countReply(room, item.thread_root, -1);
    // The server drops a deleted message's reactions and pin.
    room.pins?.delete(target);
    this.patchTarget(room, target, { deleted: true, body: undefined, reactions: undefined });
  }

  /** A live `reaction` or `reaction_removed`: the target's counts, if it is loaded. */
  reacted(room, event) {
    const item = room.items.get(`e${event.target}`);
    if (!item || item.deleted || !event.body) return;
    this.patchTarget(room, event.target, { reactions: reactionPatch(item, event, this.me.id) });
  }

  /** A live `pinned` or `unpinned`: the marker changes at once (the controller reloads the
   * room's pins list for the panel). Views re-render a message when its pin changes. */
  pinChanged(room, event) {
    room.pins ??= new Map();
    if (event.kind === 'pinned') {
      room.pins.set(event.target, { pinned_by: event.sender_id, pinned_at: event.created_at });
    } else {
      room.pins.delete(event.target);
    }
  }

  /** `GET /rooms/{id}/pins`, the latest pinned first. */
  setPins(room, list) {
    room.pinList = list;
    room.pins = new Map(list.map((pin) => [pin.message.id, { pinned_by: pin.pinned_by, pinned_at: pin.pinned_at }]));
  }

  /** Who pinned message `id` of `room`, and when, or null. */
  pinOf(room, id) {
    return room?.pins?.get(id) ?? null;
  }

  /** Count a reply in (or out of) its root's `thread` summary, when the root is loaded. If
   * the root is loaded, so is every reply after it: a loaded room is contiguous up to its
   * cursor, and replies come after their root. */
  countReply(room, rootId, delta, at) {
    const key = `e${rootId}`;
    const root = room.items.get(key);
    if (!root) return;
    const replies = Math.max(0, (root.thread?.replies || 0) + delta);
    const thread = { replies, last_reply_at: at ?? root.thread?.last_reply_at ?? 0 };
    room.items.set(key, { ...root, thread, rev: root.rev + 1 });
  }

  /** Put a message or membership event into the timeline. Events about a message (edits,
   * deletes, reactions, pins) are already folded into the message a history page returns,
   * and are never items themselves. */
  absorb(room, event) {
    if (!TIMELINE_KINDS.has(event.kind)) return;
    const key = `e${event.id}`;
    const old = room.items.get(key);
    const item = { ...old, ...event, key, rev: (old?.rev || 0) + 1 };
    if (!event.body) delete item.body;
    // A page's copy has the message's reactions as they are now (none: no field).
    if (!event.reactions) delete item.reactions;
    // A page's copy after an edit has the message's mentions as they are now.
    if (!event.mentions) delete item.mentions;
    if (!event.mentions_room) delete item.mentions_room;
    if (this.modified.has(event.id)) item.modified = true;
    room.items.set(key, item);
    // Our own message came back: the optimistic local copy has done its job.
    if (event.client_msg_id && event.sender_id === this.me.id) {
      room.items.delete(`l${event.client_msg_id}`);
    }
  }

  patchTarget(room, target, patch) {
    const key = `e${target}`;
    const item = room.items.get(key);
    if (!item) return;
    room.items.set(key, { ...item, ...patch, rev: item.rev + 1 });
  }

  /** An optimistic copy of a message we are sending; `thread` is `{ thread_root,
   * also_to_room }` for a reply, `{}` otherwise. */
  addLocal(room, clientMsgId, body, files = [], thread = {}) {
    const key = `l${clientMsgId}`;
    const item = {
      key, local: true, client_msg_id: clientMsgId, room_id: room.id, sender_id: this.me.id,
      body, files, metadata: files.length ? { files: files.join(',') } : {},
      created_at: Date.now(), status: 'sending', rev: 1, seq: Infinity, ...thread,
    };
    room.items.set(key, item);
    return item;
  }

  updateLocal(room, clientMsgId, patch) {
    const key = `l${clientMsgId}`;
    const item = room.items.get(key);
    if (item) room.items.set(key, { ...item, ...patch, rev: item.rev + 1 });
  }

  /** The server committed our message: show it as stored (a plugin may have changed it). */
  acked(room, clientMsgId, ack) {
    if (ack.modified) this.modified.add(ack.id);
    const local = room.items.get(`l${clientMsgId}`);
    const key = `e${ack.id}`;
    const existing = room.items.get(key);
    if (existing) {
      if (ack.modified) room.items.set(key, { ...existing, modified: true, rev: existing.rev + 1 });
      room.items.delete(`l${clientMsgId}`);
      return;
    }
    if (!local) return;
    room.items.delete(`l${clientMsgId}`);
    room.items.set(key, {
      key, id: ack.id, seq: ack.seq, kind: 'message', room_id: room.id, sender_id: this.me.id,
      client_msg_id: clientMsgId, body: ack.modified ? ack.body : local.body,
      metadata: local.metadata, created_at: local.created_at, modified: Boolean(ack.modified), rev: 1,
      ...threadFields(local),
    });
  }

  /** Timeline items in display order: by `seq`, unsent local messages last. */
  ordered(room) {
    return [...room.items.values()].sort(bySeq);
  }

  /** What the room's timeline shows: `ordered` without the replies kept in their threads. */
  timeline(room) {
    return this.ordered(room).filter((item) => isTimelineItem(item) && inRoomTimeline(item));
  }
}

/** Is this item something a timeline shows (a message, ours being sent, a membership
 * change), rather than an event about a message? */
export function isTimelineItem(item) {
  return Boolean(item.local) || TIMELINE_KINDS.has(item.kind);
}

/**
 * `reactions` (`[{ emoji, count, me }]`, in the order each emoji was first given) after one
 * more (`delta` 1) or one fewer (-1) `emoji` reaction, `mine` when it is the reader's own.
 * An emoji nobody reacts with any more goes; a new one goes last. Returns a new list.
 */
export function withReaction(reactions, emoji, delta, mine) {
  const list = (reactions || []).map((r) => ({ ...r }));
  const found = list.find((r) => r.emoji === emoji);
  if (!found) {
    if (delta > 0) list.push({ emoji, count: delta, me: mine });
    return list;
  }
  found.count += delta;
  if (mine) found.me = delta > 0;
  return list.filter((r) => r.count > 0);
}

/** A message's `reactions` after a live `reaction` / `reaction_removed` event. */
export function reactionPatch(item, event, meId) {
  const delta = event.kind === 'reaction' ? 1 : -1;
  const reactions = withReaction(item?.reactions, event.body, delta, event.sender_id === meId);
  return reactions.length ? reactions : undefined;
}

/** May the reader pin in `room`? Owners and admins may; every member may in a direct room
 * or a room that allows it (`members_may_pin`). The server checks again. */
export function mayPin(room) {
  if (!room) return false;
  return room.kind === 'direct' || room.role === 'owner' || room.role === 'admin' || Boolean(room.members_may_pin);
}

/** May the reader change who pins (`members_may_pin`)? Owners and admins of a group room. */
export function mayManagePins(room) {
  return Boolean(room) && room.kind === 'group' && (room.role === 'owner' || room.role === 'admin');
}

/** Display order: by `seq`, unsent local messages (seq Infinity) last. */
export function bySeq(a, b) {
  return a.seq - b.seq || a.created_at - b.created_at;
}

/** Is this item shown in its room's timeline? A thread reply is not, unless its sender also
 * sent it to the room. */
export function inRoomTimeline(item) {
  return !item.thread_root || Boolean(item.also_to_room);
}

/** The thread fields of an item or event (`{}` for a top-level message). */
export function threadFields(item) {
  if (!item.thread_root) return {};
  return item.also_to_room ? { thread_root: item.thread_root, also_to_room: true } : { thread_root: item.thread_root };
}

/** Does this event look plugin-modified to someone who did not send it? Plugins that change
 * a message say so in its metadata, under their own name (`dlp.redacted`,
 * `keyword-guard.rewrites`). The server refuses these keys from users (keys with a `.`,
 * `modified`, `redacted`, `dlp…`), so a sender cannot fake the mark. `bot.plugin` only
 * names a bot's plugin. */
export function looksModified(item) {
  if (item.modified) return true;
  const keys = Object.keys(item.metadata || {});
  // The server's own marks (which bot posted, an answer still streaming) change nothing.
  return keys.some((k) => k !== 'bot.plugin' && k !== 'assistant.streaming'
    && (k.includes('.') || k === 'modified' || k === 'redacted' || k.startsWith('dlp')));
}
