// Writes from the chat client: send (with retries), edit, delete, and what to show when the
// server or a plugin says no.

import { ApiError } from './api.js';
import { randomId, sleep } from './dom.js';

export class Outbox {
  /**
   * @param {{ api: import('./api.js').Api, state: import('./state.js').ChatState,
   *           socket: () => import('./socket.js').Socket | null, rerender: (room) => void,
   *           toast: (msg: string) => void, focusComposer: () => void }} ctx
   */
  constructor(ctx) {
    this.ctx = ctx;
  }

  /** Show the message at once and deliver it in the background. */
  send(room, body, files = []) {
    const clientMsgId = randomId('c-');
    this.ctx.state.addLocal(room, clientMsgId, body, files);
    this.deliver(room, clientMsgId, body, files);
  }

  /**
   * Send until the server gives a definite answer. Every attempt reuses the same
   * `client_msg_id`, so a retry after a lost ack can never post the message twice.
   */
  async deliver(room, clientMsgId, body, files = []) {
    const { api, state, rerender } = this.ctx;
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        const socket = this.ctx.socket();
        const ack = socket?.online
          ? await socket.request({ type: 'send', room: room.id, client_msg_id: clientMsgId, body, files })
            .catch((frame) => { throw ApiError.fromFrame(frame); })
          : await api.post(`/api/v1/rooms/${room.id}/messages`, { client_msg_id: clientMsgId, body, files });
        state.acked(room, clientMsgId, ack);
        rerender(room);
        return;
      } catch (err) {
        if (err.code === 'message_rejected') {
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

  retry(item) {
    const room = this.ctx.state.rooms.get(item.room_id);
    if (!room) return;
    this.ctx.state.updateLocal(room, item.client_msg_id, { status: 'sending', error: null });
    this.ctx.rerender(room);
    this.deliver(room, item.client_msg_id, item.body, item.files || []);
  }

  dismiss(item) {
    const room = this.ctx.state.rooms.get(item.room_id);
    if (!room) return;
    room.items.delete(item.key);
    this.ctx.rerender(room);
    this.ctx.focusComposer();
  }

  async edit(item, body) {
    const { api, state } = this.ctx;
    const room = state.rooms.get(item.room_id);
    if (!room) return;
    try {
      const ack = await api.patch(`/api/v1/rooms/${room.id}/messages/${item.id}`, { body });
      if (ack.modified) state.modified.add(item.id);
      state.patchTarget(room, item.id, {
        body: ack.modified ? ack.body : body,
        editError: null,
        modified: Boolean(ack.modified || item.modified),
      });
    } catch (err) {
      const reason = err.rejection
        ? `Edit rejected by ${err.rejection.plugin}: ${err.message}`
        : `Edit failed: ${err.message}`;
      state.patchTarget(room, item.id, { editError: reason });
    }
    this.ctx.rerender(room);
  }

  async remove(item) {
    if (!window.confirm('Delete this message for everyone?')) return;
    const { api, state } = this.ctx;
    const room = state.rooms.get(item.room_id);
    if (!room) return;
    try {
      await api.delete(`/api/v1/rooms/${room.id}/messages/${item.id}`);
      state.patchTarget(room, item.id, { deleted: true, body: undefined });
      this.ctx.rerender(room);
    } catch (err) {
      this.ctx.toast(err.message);
    }
  }
}
