// Files in the chat client: uploading with progress (the request body is the file), the
// cards a message's files show as, image previews and downloads. Every byte goes through the
// API with the session's token; nothing is fetched from anywhere else.

import { h } from './dom.js';

/** "1.2 MB" */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Upload `file` into `roomId`, reporting progress (0..1). Resolves with the server's
 * description of the file; rejects with the server's reason (an `Error` whose message is
 * what the user should read).
 */
export async function uploadFile(api, roomId, file, onProgress) {
  if (file.size > RESUMABLE_ABOVE) return uploadResumable(api, roomId, file, onProgress);
  return send(api, 'POST', `/api/v1/rooms/${roomId}/files?name=${encodeURIComponent(file.name)}`,
    file, (loaded) => onProgress(loaded / file.size));
}

/** Files larger than this go in chunks, each committed on its own (a broken connection
 * costs one chunk, and the upload goes on where it stood). */
const RESUMABLE_ABOVE = 16 * 1024 * 1024;
const CHUNK_BYTES = 8 * 1024 * 1024;
/** Tries per chunk before giving up (with a growing pause between them). */
const CHUNK_TRIES = 5;

async function uploadResumable(api, roomId, file, onProgress) {
  const opened = await api.post(`/api/v1/rooms/${roomId}/uploads`, { name: file.name, size: file.size })
    .catch((err) => { throw new Error(err.message); });
  const chunk = Math.min(CHUNK_BYTES, opened.max_chunk_bytes);
  let offset = opened.offset;
  for (;;) {
    const end = Math.min(offset + chunk, file.size);
    let answer;
    for (let attempt = 1; ; attempt += 1) {
      try {
        answer = await send(api, 'PUT', `/api/v1/uploads/${opened.file_id}?offset=${offset}`,
          file.slice(offset, end), (loaded) => onProgress((offset + loaded) / file.size));
        break;
      } catch (err) {
        // Refused by the server (too large, a plugin's verdict, …): that is the answer.
        if (err.status && err.status !== 409 && err.status < 500) throw err;
        if (attempt >= CHUNK_TRIES) throw err;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
        // Where does it stand? The chunk may have been committed before the answer was lost.
        const at = await api.get(`/api/v1/uploads/${opened.file_id}`).catch(() => null);
        if (at) offset = at.offset;
      }
    }
    if (answer.file_id === undefined) return answer; // the finished file
    offset = answer.offset;
  }
}

/** One request whose body is `body`, with upload progress; resolves with the JSON answer,
 * rejects with an `Error` carrying the server's message (and `status`). */
async function send(api, method, path, body, onLoaded) {
  const token = await api.accessToken();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) onLoaded(ev.loaded);
    };
    xhr.onload = () => {
      let answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && answer) resolve(answer);
      else {
        const err = new Error(answer?.message || `upload failed (${xhr.status})`);
        err.status = xhr.status;
        reject(err);
      }
    };
    xhr.onerror = () => reject(new Error('the server cannot be reached'));
    xhr.send(body);
  });
}

/** Descriptions of files, fetched once each. */
export class FileCache {
  constructor(api) {
    this.api = api;
    this.info = new Map();
    this.previews = new Map();
  }

  describe(id) {
    if (!this.info.has(id)) {
      this.info.set(id, this.api.get(`/api/v1/files/${id}/info`).catch((err) => {
        this.info.delete(id);
        throw err;
      }));
    }
    return this.info.get(id);
  }

  /** An object URL of an image's thumbnail (made by the server: the original is never
   * decoded here, however large). */
  preview(id) {
    if (!this.previews.has(id)) {
      this.previews.set(id, this.api.blob(`/api/v1/files/${id}/thumbnail`).then((blob) => URL.createObjectURL(blob)));
    }
    return this.previews.get(id);
  }

  async download(id, name) {
    const blob = await this.api.blob(`/api/v1/files/${id}`);
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

/** The ids a message's `files` metadata lists. */
export function attachedIds(item) {
  const listed = item.metadata?.files;
  if (!listed) return [];
  return String(listed).split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

/** Cards for a message's files, filled in as their descriptions arrive. */
export function fileCards(cache, ids, toast) {
  if (!ids.length) return null;
  const list = h('ul', { class: 'file-cards' });
  for (const id of ids) {
    const card = h('li', { class: 'file-card', dataset: { fileId: String(id) } }, h('span', { class: 'muted' }, 'File…'));
    list.append(card);
    cache.describe(id).then((file) => {
      const image = file.has_thumbnail;
      card.replaceChildren(
        image ? h('img', { class: 'file-preview', alt: file.name }) : null,
        h('span', { class: 'file-name' }, file.name),
        h('span', { class: 'file-meta muted' }, `${formatSize(file.size)} · ${file.content_type}`),
        h('button', {
          type: 'button',
          class: 'file-download',
          onclick: () => cache.download(id, file.name).catch((err) => toast(err.message)),
        }, 'Download'));
      if (image) {
        cache.preview(id).then((url) => { card.querySelector('img').src = url; }).catch(() => {});
      }
    }).catch(() => {
      card.replaceChildren(h('span', { class: 'muted' }, 'File no longer available'));
    });
  }
  return list;
}
