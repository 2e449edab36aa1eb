// Writes from the chat client: send (with retries), edit, delete, and what to show when the
// server or a plugin says no. A thread reply goes the same way, with `thread_root` (and
// `also_to_room`) added to the send. An ack naming people outside the room
// (`mentions_not_in_room`) is said in a toast: they were not mentioned.

import { ApiError } from './api.js';
import { randomId, sleep } from './dom.js';
import { threadFields } from './state.js';
import { editedMentions, notInRoomHint } from './mentions.js';

/** Refusals of what the text says (too many names, `@room` in a large room): sending the
 * same text again cannot work, so they are shown like a plugin's rejection, not retried. */
const REFUSED_TEXT = new Set(['too_many_mentions', 'room_mention_not_allowed']);

export class Outbox {
  /**
   * @param {{ api: import('./api.js').Api, state: import('./state.js').ChatState,
   *           socket: () => import('./socket.js').Socket | null, rerender: (room) => void,
   *           toast: (msg: string) => void, focusComposer: () => void }} ctx
   */
  constructor(ctx) {
    this.ctx = ctx;
  }

  /**
   * Show the message at once and deliver it in the background. `thread`: `{ thread_root,
   * also_to_room }` for a reply in a thread, `{}` for a message to the room.
   */
  send(room, body, files = [], thread = {}) {
    const clientMsgId = randomId('c-');
    const fields = threadFields(thread);
    this.ctx.state.addLocal(room, clientMsgId, body, files, fields);
    this.deliver(room, clientMsgId, body, files, fields);
  }

  /**
   * Send until the server gives a definite answer. Every attempt reuses the same
   * `client_msg_id`, so a retry after a lost ack can never post the message twice.
   */
  async deliver(room, clientMsgId, body, files = [], thread = {}) {
    const { api, state, rerender } = this.ctx;
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        const socket = this.ctx.socket();
        const ack = socket?.online
          ? await socket.request({ type: 'send', room: room.id, client_msg_id: clientMsgId, body, files, ...thread })
            .catch((frame) => { throw ApiError.fromFrame(frame); })
          : await api.post(`/api/v1/rooms/${room.id}/messages`, { client_msg_id: clientMsgId, body, files, ...thread });
        state.acked(room, clientMsgId, ack);
        rerender(room);
        this.hint(ack);
        return;
      } catch (err) {
        if (err.code === 'message_rejected' || REFUSED_TEXT.has(err.code)) {
          state.updateLocal(room, clientMsgId, { status: 'rejected', error: err.message, rejection: err.rejection });
          rerender(room);
          return;
        }
        if (!err.transient) {
          state.updateLocal(room, clientMsgId, { status: 'failed', error: err.message });
          rerender(room);
          return;
        }
        // Dismissed meanwhile, or logged out: stop trying.
        if (!api.loggedIn || !room.items.has(`l${clientMsgId}`)) return;
        state.updateLocal(room, clientMsgId, { status: 'retrying' });
        rerender(room);
        await sleep(err.retryAfterMs || delay);
      }
    }
  }

  /** Names the message mentions of people outside the room: say they were not notified. */
  hint(ack) {
    const names = ack?.mentions_not_in_room;
    if (Array.isArray(names) && names.length) this.ctx.toast(notInRoomHint(names));
  }

  retry(item) {
    const room = this.ctx.state.rooms.get(item.room_id);
    if (!room) return;
    this.ctx.state.updateLocal(room, item.client_msg_id, { status: 'sending', error: null });
    this.ctx.rerender(room);
    this.deliver(room, item.client_msg_id, item.body, item.files || [], threadFields(item));
  }

  dismiss(item) {
    const room = this.ctx.state.rooms.get(item.room_id);
    if (!room) return;
    room.items.delete(item.key);
    this.ctx.rerender(room);
    this.ctx.focusComposer();
  }

  /** `onPatch(patch)` also gets the change (the thread panel keeps replies of its own). */
  async edit(item, body, onPatch = () => {}) {
    const { api, state } = this.ctx;
    const room = state.rooms.get(item.room_id);
    if (!room) return;
    let patch;
    try {
      const ack = await api.patch(`/api/v1/rooms/${room.id}/messages/${item.id}`, { body });
      if (ack.modified) state.modified.add(item.id);
      const stored = ack.modified ? ack.body : body;
      patch = {
        body: stored,
        editError: null,
        modified: Boolean(ack.modified || item.modified),
        ...editedMentions(state, room, item, stored),
      };
      this.hint(ack);
    } catch (err) {
      const reason = err.rejection
        ? `Edit rejected by ${err.rejection.plugin}: ${err.message}`
        : `Edit failed: ${err.message}`;
      patch = { editError: reason };
    }
    state.patchTarget(room, item.id, patch);
    onPatch(patch);
    this.ctx.rerender(room);
  }

  async remove(item, onPatch = () => {}) {
    if (!window.confirm('Delete this message for everyone?')) return;
    const { api, state } = this.ctx;
    const room = state.rooms.get(item.room_id);
    if (!room) return;
    try {
      await api.delete(`/api/v1/rooms/${room.id}/messages/${item.id}`);
      state.deleted(room, item.id);
      onPatch({ deleted: true, body: undefined });
      this.ctx.rerender(room);
    } catch (err) {
      this.ctx.toast(err.message);
    }
  }
}
