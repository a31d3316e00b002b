// A small tus 1.0 client (core + creation, docs/media.md): one POST announces the file (the
// server checks the tier before any byte), then PATCHes of at most `max_chunk_bytes`, each
// through XHR for its upload progress. After a network error it asks the server where the upload
// stands (HEAD → Upload-Offset) and goes on from there; after a reload, the same file chosen again
// (same name, size and date) resumes its stored upload URL instead of starting over.

const TUS = '1.0.0';
const MAX_RETRIES = 8;

function b64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

export function kindOf(file) {
  if (file.type.startsWith('video/')) return 'video';
  if (file.type.startsWith('image/')) return 'photo';
  return /\.(mp4|mov|m4v|3gp|mkv|webm|avi|ts)$/i.test(file.name) ? 'video' : 'photo';
}

/** A video's duration as the browser reads it, or null: the server checks it again anyway. */
function videoDuration(file) {
  return new Promise((resolve) => {
    const video = document.createElement('video');
    const url = URL.createObjectURL(file);
    const done = (value) => {
      URL.revokeObjectURL(url);
      video.removeAttribute('src');
      resolve(value);
    };
    const timer = setTimeout(() => done(null), 3000);
    video.preload = 'metadata';
    video.onloadedmetadata = () => {
      clearTimeout(timer);
      done(Number.isFinite(video.duration) ? video.duration : null);
    };
    video.onerror = () => {
      clearTimeout(timer);
      done(null);
    };
    video.src = url;
  });
}

function fingerprint(classId, file) {
  return `klass-tus:${classId}:${file.name}:${file.size}:${file.lastModified}`;
}

function remember(key, value) {
  try {
    if (value) localStorage.setItem(key, JSON.stringify(value));
    else localStorage.removeItem(key);
  } catch {
    // Storage may be disabled: the upload then cannot resume after a reload, only within it.
  }
}

function recall(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || 'null');
  } catch {
    return null;
  }
}

export class UploadError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function refusal(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // A refusal without JSON (a proxy): the status says enough.
  }
  return new UploadError(body.code || `http_${response.status}`, body.message || response.statusText, response.status);
}

/**
 * Uploads `file` into post `postId` of `classId`; `onProgress({ sent, total, state })` as bytes
 * go. Resolves with the medium's id once the server has every byte.
 */
export async function tusUpload({ classId, postId, file, token, onProgress, signal = null, log = () => {} }) {
  const auth = { Authorization: `Bearer ${token}`, 'Tus-Resumable': TUS };
  const key = fingerprint(classId, file);
  let stored = recall(key);
  if (stored && stored.postId !== postId) stored = null;
  let location = stored && stored.location;
  let mediaId = stored && stored.mediaId;
  let chunk = (stored && stored.chunk) || 4 * 1024 * 1024;
  let offset = 0;

  const head = async () => {
    const response = await fetch(location, { method: 'HEAD', headers: auth, cache: 'no-store' });
    if (!response.ok) throw new UploadError(`http_${response.status}`, 'HEAD refused', response.status);
    return Number(response.headers.get('Upload-Offset'));
  };

  if (location) {
    try {
      offset = await head();
      log(`resume ${file.name} at ${offset} of ${file.size}`);
    } catch (err) {
      // The upload is gone (another class, expired, failed): start a new one.
      log(`stored upload of ${file.name} unusable (${err.message}): a new one`);
      location = null;
    }
  }
  if (!location) {
    const kind = kindOf(file);
    const metadata = [`kind ${b64(kind)}`, `filetype ${b64(file.type || 'application/octet-stream')}`];
    if (kind === 'video') {
      const seconds = await videoDuration(file);
      if (seconds !== null) metadata.push(`duration_seconds ${b64(String(seconds))}`);
    }
    const response = await fetch(`/v1/classes/${encodeURIComponent(classId)}/posts/${encodeURIComponent(postId)}/uploads`, {
      method: 'POST',
      headers: { ...auth, 'Upload-Length': String(file.size), 'Upload-Metadata': metadata.join(',') },
    });
    if (response.status !== 201) throw await refusal(response);
    const media = await response.json();
    location = response.headers.get('Location') || media.upload_url;
    mediaId = media.media_id;
    chunk = media.max_chunk_bytes || chunk;
    offset = 0;
    remember(key, { location, mediaId, postId, chunk });
  }
  onProgress({ mediaId, sent: offset, total: file.size, state: 'uploading' });

  let failures = 0;
  while (offset < file.size) {
    if (signal && signal.aborted) throw new UploadError('cancelled', 'cancelled');
    const end = Math.min(offset + chunk, file.size);
    try {
      offset = await patch(location, auth, file.slice(offset, end), offset, signal, (loaded) =>
        onProgress({ mediaId, sent: offset + loaded, total: file.size, state: 'uploading' }),
      );
      failures = 0;
      onProgress({ mediaId, sent: offset, total: file.size, state: 'uploading' });
    } catch (err) {
      if (err.code === 'cancelled') throw err;
      if (err.status && err.status !== 409 && err.status < 500 && err.status !== 429) throw err;
      failures += 1;
      if (failures > MAX_RETRIES) throw err;
      log(`PATCH at ${offset} of ${file.name} failed (${err.message}); asking the server where it stands`);
      onProgress({ mediaId, sent: offset, total: file.size, state: 'retrying' });
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** (failures - 1), 8000)));
      try {
        offset = await head();
        log(`server has ${offset} bytes of ${file.name}`);
      } catch (headErr) {
        if (headErr.status && headErr.status < 500 && headErr.status !== 429) throw headErr;
      }
    }
  }
  remember(key, null);
  return mediaId;
}

/** One PATCH; resolves with the server's new offset. */
function patch(location, auth, blob, offset, signal, onLoaded) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    if (signal) signal.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.onabort = () => reject(new UploadError('cancelled', 'cancelled'));
    xhr.open('PATCH', location);
    for (const [name, value] of Object.entries(auth)) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader('Upload-Offset', String(offset));
    xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
    xhr.upload.onprogress = (event) => onLoaded(event.loaded);
    xhr.onload = () => {
      if (xhr.status === 204) {
        resolve(Number(xhr.getResponseHeader('Upload-Offset')));
        return;
      }
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // No JSON: the status says enough.
      }
      reject(new UploadError(body.code || `http_${xhr.status}`, body.message || xhr.statusText, xhr.status));
    };
    xhr.onerror = () => reject(new UploadError('network', 'network error'));
    xhr.ontimeout = () => reject(new UploadError('network', 'timeout'));
    xhr.send(blob);
  });
}

/**
 * tus termination: the server forgets an upload in progress (its bytes, its place in the post
 * and the quota), and this browser forgets it too.
 */
export async function cancelUpload({ classId, mediaId, token }) {
  const response = await fetch(`/v1/classes/${encodeURIComponent(classId)}/media/${encodeURIComponent(mediaId)}/content`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${token}`, 'Tus-Resumable': TUS },
  });
  for (const stored of interruptedUploads(classId, null)) if (stored.mediaId === mediaId) remember(stored.key, null);
  // 404: already gone; 409: complete meanwhile (then it stays, a file of the post).
  if (!response.ok && response.status !== 404) throw await refusal(response);
}

/** Stored uploads of this class that a reload interrupted (to tell the teacher to pick the files again). */
export function interruptedUploads(classId, postId) {
  const found = [];
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (!key.startsWith(`klass-tus:${classId}:`)) continue;
      const value = recall(key);
      if (value && (postId === null || value.postId === postId)) found.push({ key, ...value });
    }
  } catch {
    // No storage: nothing to resume.
  }
  return found;
}
