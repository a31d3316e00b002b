// The media page, /media/{class_id}#token=…: for teachers and admins, a post to fill (tus uploads
// with progress, processing progress, the review of faces and regions, publishing); for everyone,
// the class's published posts (photos, a player of the blurred video, and a download button when
// the server gives a download link: Confort famille, or teachers and admins).
//
// Test hooks: window.klassMedia (role, post, items by media id, timings, log).

import { readToken } from './page.js';
import { S, applyStaticStrings, dateText, errorText } from './media-strings.js';
import { tusUpload, interruptedUploads, kindOf, cancelUpload } from './media-upload.js';
import { renderReview } from './media-review.js';

const classId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
const $ = (id) => document.getElementById(id);
const t0 = performance.now();
const hooks = { role: null, postId: null, items: {}, timings: {}, log: [], published: [] };
window.klassMedia = hooks;
const log = (line) => hooks.log.push(`${Math.round(performance.now() - t0)} ms ${line}`);

const token = readToken();

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
    this.text = errorText(code, message);
  }
}

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(`/v1/classes/${encodeURIComponent(classId)}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError('network', err.message, 0);
  }
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(json.code || `http_${response.status}`, json.message, response.status);
  return json;
}

function showAlert(text) {
  const alert = $('alert');
  alert.textContent = text;
  alert.hidden = !text;
}

function setStatus(text) {
  $('status').textContent = text;
}

// ---- The published posts (everyone) ----

function mediaLabel(media, idx) {
  return media.kind === 'video' ? S.videoN(idx + 1) : S.photoN(idx + 1);
}

function renderMediaFigure(media, idx) {
  const label = mediaLabel(media, idx);
  const figure = document.createElement('figure');
  figure.className = 'medium';
  figure.dataset.mediaId = media.media_id;
  figure.dataset.kind = media.kind;
  if (media.kind === 'video') {
    const video = document.createElement('video');
    video.controls = true;
    video.preload = 'metadata';
    video.playsInline = true;
    video.src = media.links.view;
    if (media.links.poster) video.poster = media.links.poster;
    video.setAttribute('aria-label', label);
    figure.append(video);
  } else {
    const img = document.createElement('img');
    img.src = media.links.view;
    img.alt = label;
    img.loading = 'lazy';
    figure.append(img);
  }
  const caption = document.createElement('figcaption');
  const name = document.createElement('span');
  name.textContent = label;
  caption.append(name);
  if (media.links.download) {
    const link = document.createElement('a');
    link.className = 'download button';
    link.href = media.links.download;
    link.setAttribute('download', '');
    link.textContent = S.download;
    link.setAttribute('aria-label', S.downloadOf(label));
    caption.append(link);
  }
  figure.append(caption);
  return figure;
}

async function loadFeed() {
  const posts = await api('GET', '/posts');
  const feed = $('feed-list');
  feed.replaceChildren();
  const published = posts.filter((post) => post.published_at);
  hooks.published = published.map((post) => post.post_id);
  for (const post of published) {
    const article = document.createElement('article');
    article.className = 'post';
    article.dataset.postId = post.post_id;
    const heading = document.createElement('h3');
    heading.textContent = S.postOf(dateText(post.published_at));
    const grid = document.createElement('div');
    grid.className = 'media-grid';
    post.media.filter((m) => m.links).forEach((media, idx) => grid.append(renderMediaFigure(media, idx)));
    article.append(heading, grid);
    feed.append(article);
  }
  $('feed-empty').hidden = published.length > 0;
  return posts;
}

// ---- The teacher's post ----

function itemNode(mediaId, name) {
  let item = hooks.items[mediaId];
  if (item) return item;
  const li = document.createElement('li');
  li.className = 'upload';
  li.dataset.mediaId = mediaId;
  const title = document.createElement('span');
  title.className = 'upload-name';
  title.textContent = name;
  const state = document.createElement('span');
  state.className = 'upload-state';
  const upload = document.createElement('progress');
  upload.className = 'upload-progress';
  upload.max = 100;
  upload.value = 0;
  upload.setAttribute('aria-label', S.uploadOf(name));
  const processing = document.createElement('progress');
  processing.className = 'processing-progress';
  processing.max = 100;
  processing.value = 0;
  processing.setAttribute('aria-label', S.processingOf(name));
  const review = document.createElement('div');
  review.className = 'review-slot';
  // Shown while bytes are still to send (CSS: [data-state="uploading"|"retrying"]).
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'cancel-upload';
  cancel.textContent = S.cancel;
  cancel.setAttribute('aria-label', S.cancelUpload(name));
  li.append(title, state, upload, processing, cancel, review);
  $('uploads').append(li);
  item = { li, name, state, upload, processing, review, mediaId, reviewed: 0, controller: null };
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    if (item.controller) item.controller.abort();
    try {
      await cancelUpload({ classId, mediaId, token });
      li.remove();
      delete hooks.items[mediaId];
      log(`upload ${mediaId} cancelled`);
      updatePublish();
      $('resume-hint').hidden = interruptedUploads(classId, hooks.postId).length === 0;
    } catch (err) {
      cancel.disabled = false;
      showAlert(err.text || errorText(err.code, err.message));
    }
  });
  hooks.items[mediaId] = item;
  return item;
}

function showState(item, state, percent) {
  item.li.dataset.state = state;
  item.state.textContent = percent === undefined ? S.state[state] || state : `${S.state[state] || state} ${S.percent(percent)}`;
}

/** Polls a medium until it is ready or failed, then shows its review. */
async function follow(item) {
  for (;;) {
    const media = await api('GET', `/media/${item.mediaId}`);
    item.kind = media.kind;
    if (media.state === 'uploading') {
      item.upload.value = Math.round((100 * media.received_bytes) / media.size_bytes);
      showState(item, 'uploading', item.upload.value);
      return media;
    }
    item.upload.value = 100;
    if (media.state === 'ready' || media.state === 'failed') {
      item.processing.value = media.state === 'ready' ? 100 : item.processing.value;
      // Ready once its review is on screen (the test hooks read that state).
      if (media.state === 'ready') await review(item);
      showState(item, media.state);
      if (media.state === 'failed') item.state.textContent += ` : ${errorText(media.error)}`;
      updatePublish();
      return media;
    }
    item.processing.value = media.progress_percent;
    showState(item, media.state, media.state === 'processing' ? media.progress_percent : undefined);
    updatePublish();
    await new Promise((r) => setTimeout(r, 700));
  }
}

async function review(item) {
  const [post, faces] = await Promise.all([api('GET', `/posts/${hooks.postId}`), api('GET', `/media/${item.mediaId}/faces`)]);
  const idx = post.media.findIndex((m) => m.media_id === item.mediaId);
  const media = post.media[idx];
  if (!media || !media.links) return;
  item.reviewed += 1;
  if (!hooks.timings[`faces:${item.mediaId}`]) hooks.timings[`faces:${item.mediaId}`] = performance.now() - t0;
  log(`review ${item.name}: version ${faces.version}, ${faces.frames.length} detection frames`);
  renderReview(item.review, {
    media,
    faces,
    label: `${mediaLabel(media, idx)} (${item.name})`,
    rerun: async (regions) => {
      await api('PUT', `/media/${item.mediaId}/regions`, { regions });
      showState(item, 'processing', 0);
      item.processing.value = 0;
      updatePublish();
      follow(item).catch((err) => showAlert(err.text || err.message));
    },
  });
}

function updatePublish() {
  const items = Object.values(hooks.items);
  const ready = items.length > 0 && items.every((item) => item.li.dataset.state === 'ready');
  $('publish').disabled = !ready;
}

async function addFiles(files) {
  showAlert('');
  for (const file of files) {
    const pendingName = file.name;
    const started = performance.now();
    const controller = new AbortController();
    let item = null;
    try {
      const mediaId = await tusUpload({
        classId,
        postId: hooks.postId,
        file,
        token,
        log,
        signal: controller.signal,
        onProgress: ({ mediaId, sent, total, state }) => {
          item = itemNode(mediaId, pendingName);
          item.controller = controller;
          item.kind = kindOf(file);
          item.upload.value = Math.round((100 * sent) / total);
          showState(item, state, item.upload.value);
          if (state === 'retrying') item.retries = (item.retries || 0) + 1;
        },
      });
      const seconds = (performance.now() - started) / 1000;
      hooks.timings[`upload:${mediaId}`] = { seconds, bytes: file.size, startedAt: started - t0 };
      log(`uploaded ${file.name}: ${file.size} bytes in ${seconds.toFixed(2)} s`);
      item = itemNode(mediaId, pendingName);
      follow(item).catch((err) => showAlert(err.text || err.message));
    } catch (err) {
      if (err.code === 'cancelled') continue;
      log(`upload of ${file.name} failed: ${err.code} ${err.message}`);
      showAlert(`${file.name} : ${errorText(err.code, err.message)}`);
      if (item) showState(item, 'failed');
    }
  }
  $('resume-hint').hidden = interruptedUploads(classId, hooks.postId).length === 0;
}

async function openPost(post) {
  hooks.postId = post.post_id;
  $('uploads').replaceChildren();
  hooks.items = {};
  $('editor').hidden = false;
  $('start-post').hidden = true;
  for (const [idx, media] of (post.media || []).entries()) {
    const item = itemNode(media.media_id, mediaLabel(media, idx));
    follow(item).catch((err) => showAlert(err.text || err.message));
  }
  const interrupted = interruptedUploads(classId, post.post_id);
  $('resume-hint').textContent = S.resumeHint(interrupted.length);
  $('resume-hint').hidden = interrupted.length === 0;
  updatePublish();
}

function wireTeacher(posts) {
  $('teacher').hidden = false;
  const draft = posts.find((post) => !post.published_at);
  if (draft) openPost(draft);
  $('start-post').addEventListener('click', async () => {
    try {
      const post = await api('POST', '/posts');
      await openPost({ ...post, media: [] });
      $('files').focus();
    } catch (err) {
      showAlert(err.text);
    }
  });
  $('files').addEventListener('change', (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    addFiles(files);
  });
  $('publish').addEventListener('click', async () => {
    $('publish').disabled = true;
    try {
      await api('POST', `/posts/${hooks.postId}/publish`);
      hooks.timings.published = performance.now() - t0;
      setStatus(S.published);
      $('editor').hidden = true;
      $('start-post').hidden = false;
      hooks.postId = null;
      await loadFeed();
    } catch (err) {
      showAlert(err.text);
      updatePublish();
    }
  });
}

async function start() {
  applyStaticStrings(document);
  if (!token || !classId) {
    showAlert(S.noToken);
    document.body.dataset.state = 'error';
    return;
  }
  try {
    const me = await api('GET', '/capabilities');
    hooks.role = me.role;
    hooks.canDownload = me.media.can_download;
    document.body.dataset.role = me.role;
    const administers = me.role === 'teacher' || me.role === 'admin';
    $('who').textContent = administers ? S.whoTeacher(me.display_name) : S.whoParent(me.display_name);
    const posts = await loadFeed();
    if (administers) wireTeacher(posts);
    setStatus('');
    document.body.dataset.state = 'ready';
  } catch (err) {
    showAlert(err.text || err.message);
    document.body.dataset.state = 'error';
  }
}

start();
