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
  const token = await api.accessToken();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/v1/rooms/${roomId}/files?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded / ev.total);
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else reject(new Error(body?.message || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error('the server cannot be reached'));
    xhr.send(file);
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

  /** An object URL of the file's bytes (images only are asked for). */
  preview(id) {
    if (!this.previews.has(id)) {
      this.previews.set(id, this.api.blob(`/api/v1/files/${id}`).then((blob) => URL.createObjectURL(blob)));
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
      const image = file.content_type.startsWith('image/');
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
